"""``trainer.fast_path=true`` for RSL-RL on CUDA: the rollout's policy inference and each
minibatch's forward and backward pass replayed as CUDA graphs, RSL-RL's PPO unchanged.

A 4096-env CartPole iteration is launch-bound: ~5,000 small kernels, each costing more on the host
(Python, dispatch, launch) than on the H200 (``bench/step_profile.py``). A CUDA graph launches a
captured sequence of kernels as one, so what RSL-RL computes stays kernel for kernel the same and
only the host's part goes. Two sequences are captured:

- **act**: ``PPO.act``'s actor sample, critic value, log-probability and distribution parameters,
  from a static copy of the step's observations; one replay per env step.
- **minibatch**: ``PPO.update``'s body up to ``loss.backward()`` (forward, KL, losses, backward into
  the parameters' ``.grad``), from static copies of the minibatch; one replay per minibatch.

What decides on the host stays eager, in RSL-RL's order: the adaptive learning rate (reads the
KL), the gradient clipping and the Adam step (``foreach``: a few launches for all parameters), the
loss scalars, the normalizers. RNG draws inside a graph (the actor's sample) advance the CUDA
generator exactly as the eager call would, so the run is the same bit for bit (tested on the GPU
against the eager path, ``tests/test_gpu.py``). On the CPU the same code runs eagerly: there the
fast path tests that this loop is RSL-RL's, to the bit (``tests/test_fast_path.py``).

The first call of each sequence runs eagerly (the warm-up a capture needs), the second captures
and replays, every later call replays. The graphs are captured per process (not checkpointed).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from trainers.cuda_graphs import CapturedCall, buffers_kept_in_place, into_static
from trainers.fast_path import refuse_agent


def unsupported(alg: Any) -> list[str]:
    """What of this PPO the graphed loop does not run (each needs host work inside a minibatch)."""
    reasons = []
    if alg.actor.is_recurrent or alg.critic.is_recurrent:
        reasons.append("a recurrent actor or critic (its minibatches are trajectories with hidden states and masks)")
    if alg.rnd:
        reasons.append("RND (a second optimizer inside each minibatch)")
    if alg.symmetry:
        reasons.append("symmetry augmentation (it resizes each minibatch)")
    if alg.use_mixed_precision:
        reasons.append("use_mixed_precision (the graph is captured in fp32)")
    return reasons


class GraphedPpo:
    """RSL-RL's ``PPO.act`` and ``PPO.update`` (rsl-rl-lib 5.x, feedforward) with their device
    work in :class:`CapturedCall`\\ s. Installed over the algorithm's own methods."""

    def __init__(self, alg: Any, device: torch.device | str) -> None:
        refuse_agent("rsl_rl", unsupported(alg))
        self.alg = alg
        self.act_call = CapturedCall(self._act, device)
        self.minibatch_call = CapturedCall(self._minibatch, device)
        self.act_in: SimpleNamespace | None = None
        self.batch_in: SimpleNamespace | None = None

    def install(self) -> None:
        self.alg.act = self.act
        self.alg.update = self.update

    # --- the rollout -------------------------------------------------------------------------

    def act(self, obs: Any) -> torch.Tensor:
        """``PPO.act``: the same transition, its tensors computed by the graph."""
        self.act_in = into_static(self.act_in, obs=obs)
        actions, values, log_prob, params = self.act_call()
        transition = self.alg.transition
        transition.hidden_states = (self.alg.actor.get_hidden_state(), self.alg.critic.get_hidden_state())
        transition.actions, transition.values, transition.actions_log_prob = actions, values, log_prob
        transition.distribution_params = params
        transition.observations = obs
        return actions

    def _act(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
        alg, obs = self.alg, self.act_in.obs
        actions = alg.actor(obs, stochastic_output=True).detach()
        values = alg.critic(obs).detach()
        log_prob = alg.actor.get_output_log_prob(actions).detach()
        params = tuple(p.detach() for p in alg.actor.output_distribution_params)
        return actions, values, log_prob, params

    # --- the update --------------------------------------------------------------------------

    def update(self) -> dict[str, float]:
        """``PPO.update`` for a feedforward PPO without RND or symmetry, in RSL-RL's order."""
        alg = self.alg
        mean_value_loss = mean_surrogate_loss = mean_entropy = 0.0
        for batch in alg.storage.mini_batch_generator(alg.num_mini_batches, alg.num_learning_epochs):
            self._load(batch)
            kl_mean, surrogate_loss, value_loss, entropy = self.minibatch_call()
            if kl_mean is not None:
                self._adapt_learning_rate(kl_mean)
            if alg.is_multi_gpu:
                alg.reduce_parameters()
            nn.utils.clip_grad_norm_(alg.actor.parameters(), alg.max_grad_norm)
            nn.utils.clip_grad_norm_(alg.critic.parameters(), alg.max_grad_norm)
            alg.optimizer.step()
            mean_value_loss += value_loss.item()
            mean_surrogate_loss += surrogate_loss.item()
            mean_entropy += entropy.mean().item()
        obs = alg.storage.observations.flatten(0, 1)
        # RSL-RL's observation normalizer replaces its _std after each update.
        with buffers_kept_in_place(alg.actor, alg.critic):
            alg.actor.update_normalization(obs)
            alg.critic.update_normalization(obs)
        num_updates = alg.num_learning_epochs * alg.num_mini_batches
        alg.storage.clear()
        return {
            "value": mean_value_loss / num_updates,
            "surrogate": mean_surrogate_loss / num_updates,
            "entropy": mean_entropy / num_updates,
        }

    def _load(self, batch: Any) -> None:
        """The minibatch into the static buffers the graph reads."""
        fields = ("observations", "actions", "values", "advantages", "returns", "old_actions_log_prob",
                  "old_distribution_params")
        self.batch_in = into_static(self.batch_in, **{name: getattr(batch, name) for name in fields})

    def _adapt_learning_rate(self, kl_mean: torch.Tensor) -> None:
        """RSL-RL's adaptive schedule, on the KL the graph computed (an inference tensor)."""
        with torch.inference_mode():
            self._adapt(kl_mean)

    def _adapt(self, kl_mean: torch.Tensor) -> None:
        alg = self.alg
        if alg.is_multi_gpu:
            torch.distributed.all_reduce(kl_mean, op=torch.distributed.ReduceOp.SUM)
            kl_mean /= alg.gpu_world_size
        if alg.gpu_global_rank == 0:
            if kl_mean > alg.desired_kl * 2.0:
                alg.learning_rate = max(1e-5, alg.learning_rate / 1.5)
            elif kl_mean < alg.desired_kl / 2.0 and kl_mean > 0.0:
                alg.learning_rate = min(1e-2, alg.learning_rate * 1.5)
        if alg.is_multi_gpu:
            lr_tensor = torch.tensor(alg.learning_rate, device=alg.device)
            torch.distributed.broadcast(lr_tensor, src=0)
            alg.learning_rate = lr_tensor.item()
        for param_group in alg.optimizer.param_groups:
            param_group["lr"] = alg.learning_rate

    def _minibatch(self) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``PPO.update``'s loop body from the forward pass to ``loss.backward()``."""
        alg, batch = self.alg, self.batch_in
        assert batch is not None
        advantages = batch.advantages
        if alg.normalize_advantage_per_mini_batch:
            with torch.no_grad():
                advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        alg.actor(batch.observations, masks=None, hidden_state=None, stochastic_output=True)
        actions_log_prob = alg.actor.get_output_log_prob(batch.actions)
        values = alg.critic(batch.observations, masks=None, hidden_state=None)
        distribution_params = tuple(alg.actor.output_distribution_params)
        entropy = alg.actor.output_entropy
        kl_mean = None
        if alg.desired_kl is not None and alg.schedule == "adaptive":
            with torch.inference_mode():
                kl = alg.actor.get_kl_divergence(batch.old_distribution_params, distribution_params)
                kl_mean = torch.mean(kl)
        ratio = torch.exp(actions_log_prob - torch.squeeze(batch.old_actions_log_prob))
        surrogate = -torch.squeeze(advantages) * ratio
        surrogate_clipped = -torch.squeeze(advantages) * torch.clamp(ratio, 1.0 - alg.clip_param, 1.0 + alg.clip_param)
        surrogate_loss = torch.max(surrogate, surrogate_clipped).mean()
        if alg.use_clipped_value_loss:
            value_clipped = batch.values + (values - batch.values).clamp(-alg.clip_param, alg.clip_param)
            value_losses = (values - batch.returns).pow(2)
            value_losses_clipped = (value_clipped - batch.returns).pow(2)
            value_loss = torch.max(value_losses, value_losses_clipped).mean()
        else:
            value_loss = (batch.returns - values).pow(2).mean()
        loss = surrogate_loss + alg.value_loss_coef * value_loss - alg.entropy_coef * entropy.mean()
        alg.optimizer.zero_grad()
        loss.backward()
        return kl_mean, surrogate_loss, value_loss, entropy
