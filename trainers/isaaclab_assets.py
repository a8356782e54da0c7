"""``seedlock-isaaclab-assets <dir>``: stand-in USD files for Isaac Lab's Cartpole, Ant and ground
plane, under Isaac Lab's asset layout, for a machine that cannot reach NVIDIA's asset server.

    seedlock-isaaclab-assets ~/isaaclab-assets
    seedlock-train task=isaaclab/Isaac-Cartpole-Direct task.asset_root=~/isaaclab-assets device=cpu

The robots are Newton's own example assets (installed with Isaac Lab 3.x's ``newton``), whose
joint and body names are Isaac Lab's: its cartpole USD (a copy of Isaac Lab's, with its default
prim's name corrected) and its Ant. The ground plane is a flat collision plane written with
OpenUSD (``pxr``). A machine with internet needs none of this: Isaac Lab downloads the real ones.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Where Isaac Lab looks for each asset, below ISAACSIM_ASSET_ROOT.
CARTPOLE = "Isaac/IsaacLab/Robots/Classic/Cartpole/cartpole.usd"
ANT = "Isaac/Robots/IsaacSim/Ant/ant_instanceable.usd"
GROUND_PLANE = "Isaac/IsaacLab/Environments/Grid/default_ground_plane_checker_v1/default_ground_plane.usda"
EXIT_BAD_INPUT = 2


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0 if args and args[0] in ("-h", "--help") else EXIT_BAD_INPUT)
    try:
        written = write_assets(Path(args[0]).expanduser())
    except (ImportError, FileExistsError) as error:
        print(f"seedlock-isaaclab-assets: error: {error}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    for path in written:
        print(f"seedlock-isaaclab-assets: wrote {path}")
    print(f"seedlock-isaaclab-assets: use task.asset_root={args[0]}")


def write_assets(root: Path) -> list[Path]:
    """Write the three stand-ins under ``root``; refuses to replace an existing file."""
    try:
        import newton.examples
        from pxr import Gf, Sdf, Usd, UsdGeom, UsdPhysics
    except ImportError as error:
        raise ImportError(
            f"the stand-in assets need OpenUSD (pxr) and newton, which Isaac Lab 3.x installs ({error}); run this "
            "command with the Python of .venv-isaaclab (make install-isaaclab)."
        ) from None
    paths = [root / CARTPOLE, root / ANT, root / GROUND_PLANE]
    existing = [str(path) for path in paths if path.exists()]
    if existing:
        raise FileExistsError(f"{', '.join(existing)} already exist(s); seedlock never replaces a file. Choose another <dir>.")
    newton_assets = Path(newton.examples.__file__).parent / "assets"
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
    # Newton's copy of Isaac Lab's cartpole names its default prim "cartPole"; the prim is /cartpole.
    _copy_layer(Sdf, newton_assets / "cartpole_single_pendulum.usda", paths[0], default_prim="cartpole")
    _copy_layer(Sdf, newton_assets / "ant.usda", paths[1])
    stage = Usd.Stage.CreateNew(str(paths[2]))
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.z)
    UsdGeom.SetStageMetersPerUnit(stage, 1.0)
    stage.SetDefaultPrim(UsdGeom.Xform.Define(stage, "/GroundPlane").GetPrim())
    UsdGeom.Xform.Define(stage, "/GroundPlane/Environment").AddScaleOp().Set(Gf.Vec3f(1, 1, 1))
    mesh = UsdGeom.Mesh.Define(stage, "/GroundPlane/Environment/Geometry")  # what Isaac Lab's visual material binds to
    mesh.CreatePointsAttr([(-50, -50, 0), (50, -50, 0), (50, 50, 0), (-50, 50, 0)])
    mesh.CreateFaceVertexCountsAttr([4])
    mesh.CreateFaceVertexIndicesAttr([0, 1, 2, 3])
    # Isaac Lab's spawn_ground_plane scales the texture through this primvar.
    UsdGeom.PrimvarsAPI(mesh).CreatePrimvar("st", Sdf.ValueTypeNames.TexCoord2fArray, UsdGeom.Tokens.faceVarying).Set(
        [(0, 0), (1, 0), (1, 1), (0, 1)]
    )
    plane = UsdGeom.Plane.Define(stage, "/GroundPlane/CollisionPlane")
    plane.CreateAxisAttr("Z")
    UsdPhysics.CollisionAPI.Apply(plane.GetPrim())
    stage.GetRootLayer().Save()
    return paths


def _copy_layer(sdf: object, source: Path, target: Path, default_prim: str | None = None) -> None:
    layer = sdf.Layer.FindOrOpen(str(source))  # type: ignore[attr-defined]
    out = sdf.Layer.CreateNew(str(target), args={"format": "usda"})  # type: ignore[attr-defined]
    out.TransferContent(layer)
    if default_prim:
        out.defaultPrim = default_prim
    out.Save()


if __name__ == "__main__":
    main()
