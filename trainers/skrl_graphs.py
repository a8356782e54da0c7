"""``trainer.fast_path=true`` for skrl on CUDA: PPO's policy inference and each minibatch's forward
and backward pass replayed as CUDA graphs (``trainers/cuda_graphs.py``), skrl's PPO unchanged.

Three sequences are captured, from static copies of their inputs:

- **act**: ``PPO.act`` in training (the observation preprocessor, the policy's sample and
  log-probability, the value and its inverse scaling); one replay per env step.
- **minibatch, first epoch** and **minibatch, later epochs**: ``PPO.update``'s minibatch body up to
  ``backward()`` (preprocessors, policy and value forward, KL, losses, backward into ``.grad``).
  skrl updates its running scalers' statistics in the first epoch's minibatches only
  (``train=not epoch``), so the two bodies are two graphs; each replay points the parameters'
  ``.grad`` at its graph's gradients before the host reads them.

What decides on the host stays eager, in skrl's order: the minibatch sampling, GAE, the gradient
clipping and the optimizer step, the loss scalars, the KL-adaptive learning rate (from the list of
each minibatch's KL, as skrl builds it). skrl's shared policy-value model passes the trunk's output
between the two roles in Python; both roles run inside one captured sequence, so that hand-over is
captured too. skrl's ``RunningStandardScaler`` assigns new statistics tensors at each update; a
graph reads the tensors it was captured with, so the fast path runs skrl's update inside
``buffers_kept_in_place`` (the new values copied into the old tensors: the same bits). On the CPU the same loop runs eagerly,
and ``tests/test_fast_path.py`` proves it is skrl's own, to the bit.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainers.cuda_graphs import CapturedCall, buffers_kept_in_place, into_static
from trainers.fast_path import refuse_agent


def statistics_kept_in_place(scaler: nn.Module) -> Callable[..., None]:
    """skrl's own ``RunningStandardScaler._parallel_variance`` of ``scaler``, run inside
    :func:`buffers_kept_in_place`: the new statistics end up in the tensors a captured graph reads."""
    update = scaler._parallel_variance

    def update_in_place(*args: Any) -> None:
        with buffers_kept_in_place(scaler):
            update(*args)

    return update_in_place


def unsupported(agent: Any) -> list[str]:
    """What of this skrl PPO the graphed loop does not run (each needs host work inside a minibatch
    or changes a minibatch's shape)."""
    cfg, reasons = agent.cfg, []
    if cfg.mixed_precision:
        reasons.append("mixed_precision=true (the graphs are captured in fp32)")
    if cfg.kl_threshold:
        reasons.append(f"kl_threshold={cfg.kl_threshold} (its early stop reads each minibatch's KL before the backward pass)")
    samples = agent.memory.memory_size * agent.memory.num_envs
    if samples % cfg.mini_batches:
        reasons.append(f"rollouts x envs = {samples} samples in mini_batches={cfg.mini_batches} (minibatches of unequal size)")
    return reasons


class GraphedSkrlPpo:
    """skrl's ``PPO.act`` (in training) and ``PPO.update`` (skrl 2.1, feedforward) with their
    device work in :class:`CapturedCall`\\ s; the seedlock agent dispatches to them."""

    def __init__(self, agent: Any, device: torch.device | str) -> None:
        refuse_agent("skrl", unsupported(agent))
        self.agent = agent
        for preprocessor in (agent._observation_preprocessor, agent._state_preprocessor, agent._value_preprocessor):
            if isinstance(preprocessor, nn.Module) and hasattr(preprocessor, "_parallel_variance"):
                preprocessor._parallel_variance = statistics_kept_in_place(preprocessor)
        self.parameters = [p for group in agent.optimizer.param_groups for p in group["params"]]
        self.act_call = CapturedCall(self._act, device)
        self.minibatch_calls = {first: CapturedCall(lambda first=first: self._minibatch(first), device)
                                for first in (True, False)}
        self.act_in: SimpleNamespace | None = None
        self.batch_in: SimpleNamespace | None = None

    # --- the rollout -------------------------------------------------------------------------

    def act(self, observations: torch.Tensor, states: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, Any]]:
        """``PPO.act`` in training: the same actions and outputs, and the log-probability and value
        skrl keeps for ``record_transition``."""
        self.act_in = into_static(self.act_in, observations=observations, states=states)
        actions, outputs, values = self.act_call()
        self.agent._current_log_prob = outputs["log_prob"]
        self.agent._current_values = values
        return actions, outputs

    def _act(self) -> tuple[torch.Tensor, dict[str, Any], torch.Tensor]:
        agent, static = self.agent, self.act_in
        assert static is not None
        inputs = {
            "observations": agent._observation_preprocessor(static.observations),
            "states": agent._state_preprocessor(static.states),
        }
        actions, outputs = agent.policy.act(inputs, role="policy")
        values, _ = agent.value.act(inputs, role="value")
        return actions, outputs, agent._value_preprocessor(values, inverse=True)

    # --- the update --------------------------------------------------------------------------

    def update(self) -> None:
        """``PPO.update`` (skrl 2.1) for the agents :func:`unsupported` lets through, in skrl's order."""
        from skrl import config
        from skrl.agents.torch.ppo.ppo import compute_gae
        from skrl.resources.schedulers.torch import KLAdaptiveLR

        agent, cfg = self.agent, self.agent.cfg
        with torch.no_grad():
            inputs = {
                "observations": agent._observation_preprocessor(agent._current_next_observations),
                "states": agent._state_preprocessor(agent._current_next_states),
            }
            agent.value.enable_training_mode(False)
            last_values, _ = agent.value.act(inputs, role="value")
            agent.value.enable_training_mode(True)
            last_values = agent._value_preprocessor(last_values, inverse=True)
        memory = agent.memory
        values = memory.get_tensor_by_name("values")
        returns, advantages = compute_gae(
            rewards=memory.get_tensor_by_name("rewards"),
            terminated=memory.get_tensor_by_name("terminated"),
            truncated=memory.get_tensor_by_name("truncated"),
            values=values,
            last_values=last_values,
            discount_factor=cfg.discount_factor,
            lambda_coefficient=cfg.gae_lambda,
            time_limit_bootstrap=cfg.time_limit_bootstrap,
        )
        memory.set_tensor_by_name("values", agent._value_preprocessor(values, train=True))
        memory.set_tensor_by_name("returns", agent._value_preprocessor(returns, train=True))
        memory.set_tensor_by_name("advantages", advantages)

        cumulative_policy_loss = cumulative_entropy_loss = cumulative_value_loss = 0.0
        stddev = torch.zeros(())
        for epoch in range(cfg.learning_epochs):
            kl_divergences = []
            for sampled in memory.sample(names=agent._tensors_names, batch_size=len(memory), mini_batches=cfg.mini_batches):
                self.batch_in = into_static(self.batch_in, **dict(zip(agent._tensors_names, sampled)))
                kl_divergence, policy_loss, value_loss, entropy_loss, stddev, grads = self.minibatch_calls[not epoch]()
                for parameter, grad in zip(self.parameters, grads):
                    parameter.grad = grad  # this graph's gradients (the other graph has its own)
                kl_divergences.append(kl_divergence.clone())  # the graph's output is rewritten next replay
                if config.torch.is_distributed:
                    agent.policy.reduce_parameters()
                    if agent.policy is not agent.value:
                        agent.value.reduce_parameters()
                if cfg.grad_norm_clip > 0:
                    agent.scaler.unscale_(agent.optimizer)
                    if agent.policy is agent.value:
                        nn.utils.clip_grad_norm_(agent.policy.parameters(), cfg.grad_norm_clip)
                    else:
                        nn.utils.clip_grad_norm_(
                            itertools.chain(agent.policy.parameters(), agent.value.parameters()), cfg.grad_norm_clip
                        )
                agent.scaler.step(agent.optimizer)
                agent.scaler.update()
                cumulative_policy_loss += policy_loss.item()
                cumulative_value_loss += value_loss.item()
                if cfg.entropy_loss_scale:
                    cumulative_entropy_loss += entropy_loss.item()
            if agent.scheduler:
                if isinstance(agent.scheduler, KLAdaptiveLR):
                    kl = torch.tensor(kl_divergences, device=agent.device).mean()
                    if config.torch.is_distributed:
                        torch.distributed.all_reduce(kl, op=torch.distributed.ReduceOp.SUM)
                        kl /= config.torch.world_size
                    agent.scheduler.step(kl.item())
                else:
                    agent.scheduler.step()

        updates = cfg.learning_epochs * cfg.mini_batches
        agent.track_data("Loss / Policy loss", cumulative_policy_loss / updates)
        agent.track_data("Loss / Value loss", cumulative_value_loss / updates)
        if cfg.entropy_loss_scale:
            agent.track_data("Loss / Entropy loss", cumulative_entropy_loss / updates)
        # The last minibatch's policy distribution (the graph that ran it holds its values).
        agent.track_data("Policy / Standard deviation", stddev.mean().item())
        if agent.scheduler:
            agent.track_data("Learning / Learning rate", agent.scheduler.get_last_lr()[0])

    def _minibatch(self, first_epoch: bool) -> tuple[torch.Tensor, ...]:
        """``PPO.update``'s minibatch body from the preprocessors to ``backward()``; returns the
        KL, the losses, the policy's standard deviation and the gradients it wrote."""
        agent, cfg, batch = self.agent, self.agent.cfg, self.batch_in
        assert batch is not None
        inputs = {
            "observations": agent._observation_preprocessor(batch.observations, train=first_epoch),
            "states": agent._state_preprocessor(batch.states, train=first_epoch),
        }
        _, outputs = agent.policy.act({**inputs, "taken_actions": batch.actions}, role="policy")
        next_log_prob = outputs["log_prob"]
        with torch.no_grad():
            ratio = next_log_prob - batch.log_prob
            kl_divergence = ((torch.exp(ratio) - 1) - ratio).mean()
        if cfg.entropy_loss_scale:
            entropy_loss = -cfg.entropy_loss_scale * agent.policy.get_entropy(role="policy").mean()
        else:
            entropy_loss = 0
        ratio = torch.exp(next_log_prob - batch.log_prob)
        surrogate = batch.advantages * ratio
        surrogate_clipped = batch.advantages * torch.clip(ratio, 1.0 - cfg.ratio_clip, 1.0 + cfg.ratio_clip)
        policy_loss = -torch.min(surrogate, surrogate_clipped).mean()
        predicted_values, _ = agent.value.act(inputs, role="value")
        if cfg.value_clip > 0:
            predicted_values = batch.values + torch.clip(
                predicted_values - batch.values, min=-cfg.value_clip, max=cfg.value_clip
            )
        value_loss = cfg.value_loss_scale * F.mse_loss(batch.returns, predicted_values)
        agent.optimizer.zero_grad()
        agent.scaler.scale(policy_loss + entropy_loss + value_loss).backward()
        grads = tuple(parameter.grad for parameter in self.parameters)
        stddev = agent.policy.distribution(role="policy").stddev
        return kl_divergence, policy_loss, value_loss, entropy_loss, stddev, grads

