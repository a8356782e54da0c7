"""Hand-written training scripts: each library driving a seedlock task the way its own docs and
Isaac Lab's scripts do, with no seedlock code in the loop (no adapter, no fingerprints, no
seedlock checkpoints). ``bench.train_throughput`` times them against ``seedlock-train``; the
ratio is the suite's overhead.

Each module has ``rollout_steps(agent)`` (env steps per env in one iteration) and
``train(env, agent, iterations, device, log_dir, checkpoint_interval, seed)``. ``agent`` is the
same agent YAML seedlock trains with, as a plain dict, so both sides run the same hyperparameters;
each script translates it by hand, as a user would. Like seedlock they log TensorBoard scalars
once per iteration and save the library's own checkpoint every ``checkpoint_interval`` iterations.
"""
