"""``trainer.fast_path=true`` for rl_games (1.6.x, ``a2c_continuous``): the rollout's policy inference
and each minibatch's forward and backward pass replayed as CUDA graphs (``trainers/cuda_graphs.py``),
rl_games' PPO unchanged; and its rollout without its per-step episode bookkeeping.

Installed over three of the agent's methods:

- ``get_action_values``: the model's inference (sample, neg-log-probability, value, mu and sigma)
  from a static copy of the step's observations; one replay per env step.
- ``calc_gradients``: the model's training forward, ``calc_losses``, ``backward()`` and the KL,
  one replay per minibatch. The observation normalizer learns in the first mini-epoch only, and
  rl_games' loss coefficients are Python numbers a graph holds as constants, so there is one graph
  per (modules' training flags, coefficients); a replay points the parameters' ``.grad`` at its own
  graph's gradients. The gradient clipping and the optimizer step stay eager, as do the KL-adaptive
  learning rate (``train_epoch``, rl_games' own) and the mu/sigma write-back.
- ``play_steps``: rl_games' rollout loop, the same steps and storage, less the episode statistics
  it gathers at every step for its console and TensorBoard (``dones.nonzero()``, the algo observer's
  copies): the host no longer waits for the GPU at each env step. Those statistics are what the
  fast path gives up, as with RSL-RL and skrl; the run's episode returns are seedlock's own.

rl_games' ``RunningMeanStd`` (TorchScript) assigns new statistics tensors at each update; a graph
reads the tensors it was captured with, so the new values are copied into the old tensors
(``buffers_kept_in_place``: the same bits), inside the graphs and around ``prepare_dataset``. On
the CPU the same loop runs eagerly, and ``tests/test_fast_path.py`` proves it is rl_games' own, to
the bit, and that the buffers stay where the graphs read them.
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import torch
from rl_games.algos_torch import torch_ext
from rl_games.common.a2c_common import swap_and_flatten01

from trainers.cuda_graphs import CapturedCall, buffers_kept_in_place, into_static
from trainers.fast_path import refuse_agent

MINIBATCH_INPUTS = ("obs", "actions", "old_values", "old_logp_actions", "advantages", "returns", "mu", "sigma")


def unsupported(agent: Any) -> list[str]:
    """What of this rl_games agent the graphed loop does not run."""
    reasons = []
    if agent.is_rnn:
        reasons.append("an RNN network (its rollout and minibatches carry hidden states)")
    if agent.has_central_value:
        reasons.append("a central value network (trained apart, by its own loop)")
    if agent.use_action_masks:
        reasons.append("action masks")
    if agent.mixed_precision:
        reasons.append("mixed_precision=true (the graphs are captured in fp32)")
    return reasons


class GraphedRlGames:
    """The graphed ``get_action_values``, ``calc_gradients`` and ``play_steps`` of one agent."""

    def __init__(self, agent: Any, device: torch.device | str) -> None:
        refuse_agent("rl_games", unsupported(agent))
        self.agent, self.device = agent, device
        self.parameters = list(agent.model.parameters())
        self.act_call = CapturedCall(self._act, device)
        self.minibatch_calls: dict[tuple, CapturedCall] = {}
        self.act_in: SimpleNamespace | None = None
        self.batch_in: SimpleNamespace | None = None

    def install(self) -> None:
        agent = self.agent
        agent.get_action_values = self.get_action_values
        agent.calc_gradients = self.calc_gradients
        agent.play_steps = self.play_steps
        prepare_dataset = agent.prepare_dataset

        def prepare_dataset_in_place(batch_dict: dict[str, Any]) -> None:
            with buffers_kept_in_place(agent.model):  # the value normalizer learns here
                prepare_dataset(batch_dict)

        agent.prepare_dataset = prepare_dataset_in_place

    # --- the rollout -------------------------------------------------------------------------

    def get_action_values(self, obs: dict[str, torch.Tensor]) -> dict[str, Any]:
        self.agent.model.eval()
        self.act_in = into_static(self.act_in, obs=obs["obs"])
        return self.act_call()

    def _act(self) -> dict[str, Any]:
        agent = self.agent
        input_dict = {"is_train": False, "prev_actions": None, "obs": agent._preproc_obs(self.act_in.obs),
                      "rnn_states": agent.rnn_states}
        with torch.no_grad(), buffers_kept_in_place(agent.model):
            return agent.model(input_dict)

    def play_steps(self) -> dict[str, Any]:
        """``A2CBase.play_steps`` (rl_games 1.6.5, no RNN, masks or central value) less its per-step
        episode statistics; everything stored and returned is rl_games'."""
        agent = self.agent
        step_time = 0.0
        for n in range(agent.horizon_length):
            res_dict = agent.get_action_values(agent.obs)
            agent.experience_buffer.update_data("obses", n, agent.obs["obs"])
            agent.experience_buffer.update_data("dones", n, agent.dones)
            for key in agent.update_list:
                agent.experience_buffer.update_data(key, n, res_dict[key])
            step_time_start = time.perf_counter()
            agent.obs, rewards, agent.dones, infos = agent.env_step(res_dict["actions"])
            step_time += time.perf_counter() - step_time_start
            shaped_rewards = agent.rewards_shaper(rewards)
            if agent.value_bootstrap and "time_outs" in infos:
                time_outs = agent.cast_obs(infos["time_outs"]).unsqueeze(1).float()
                shaped_rewards.add_(agent.gamma * res_dict["values"] * time_outs)
            agent.experience_buffer.update_data("rewards", n, shaped_rewards)

        last_values = agent.get_values(agent.obs)
        fdones = agent.dones.float()
        mb_fdones = agent.experience_buffer.tensor_dict["dones"].float()
        mb_values = agent.experience_buffer.tensor_dict["values"]
        mb_rewards = agent.experience_buffer.tensor_dict["rewards"]
        mb_advs = agent.discount_values(fdones, last_values, mb_fdones, mb_values, mb_rewards)
        mb_returns = mb_advs + mb_values
        batch_dict = agent.experience_buffer.get_transformed_list(swap_and_flatten01, agent.tensor_list)
        batch_dict["returns"] = swap_and_flatten01(mb_returns)
        batch_dict["played_frames"] = agent.batch_size
        batch_dict["step_time"] = step_time
        return batch_dict

    # --- the update --------------------------------------------------------------------------

    def calc_gradients(self, input_dict: dict[str, Any]) -> None:
        """``A2CAgent.calc_gradients``: its results in ``agent.train_result``, as rl_games' own."""
        agent = self.agent
        self.batch_in = into_static(self.batch_in, **{name: input_dict[name] for name in MINIBATCH_INPUTS})
        a_loss, c_loss, entropy, kl_dist, mu, sigma, b_loss, action_log_probs, grads = self._minibatch_call()()
        for parameter, grad in zip(self.parameters, grads):
            parameter.grad = grad  # this graph's gradients (each graph has its own)
        agent.trancate_gradients_and_step()
        batch = self.batch_in
        agent.diagnostics.mini_batch(agent, {
            "values": batch.old_values, "returns": batch.returns, "new_neglogp": action_log_probs,
            "old_neglogp": batch.old_logp_actions, "masks": None,
        }, agent.e_clip, 0)
        # The graph's outputs are rewritten by its next replay; rl_games keeps the scalars in lists.
        agent.train_result = (a_loss.clone(), c_loss.clone(), entropy.clone(), kl_dist.clone(), agent.last_lr, 1.0,
                              mu, sigma, b_loss.clone())

    def _minibatch_call(self) -> CapturedCall:
        """The graph for the modules' current training flags and loss coefficients; coefficients
        that changed (a schedule) retire the graphs captured with the old ones."""
        agent = self.agent
        coefficients = (agent.e_clip, agent.critic_coef, agent.entropy_coef, agent.bounds_loss_coef)
        key = (tuple(module.training for module in agent.model.modules()), coefficients)
        if key not in self.minibatch_calls:
            self.minibatch_calls = {k: call for k, call in self.minibatch_calls.items() if k[1] == coefficients}
            self.minibatch_calls[key] = CapturedCall(self._minibatch, self.device)
        return self.minibatch_calls[key]

    def _minibatch(self) -> tuple[Any, ...]:
        """``A2CAgent.calc_gradients`` from the training forward to ``backward()``, and the KL."""
        agent, batch = self.agent, self.batch_in
        assert batch is not None
        batch_dict = {"is_train": True, "prev_actions": batch.actions, "obs": agent._preproc_obs(batch.obs)}
        with buffers_kept_in_place(agent.model):  # the observation normalizer learns here
            res_dict = agent.model(batch_dict)
        action_log_probs, mu, sigma = res_dict["prev_neglogp"], res_dict["mus"], res_dict["sigmas"]
        loss, a_loss, c_loss, entropy, b_loss, _ = agent.calc_losses(
            agent.actor_loss_func, batch.old_logp_actions, action_log_probs, batch.advantages, agent.e_clip,
            batch.old_values, res_dict["values"], batch.returns, mu, res_dict["entropy"], None,
        )
        aux_loss = agent.model.get_aux_loss()
        agent.aux_loss_dict = {}
        if aux_loss is not None:
            for name, value in aux_loss.items():
                loss += value
                agent.aux_loss_dict[name] = [value.detach()]
        for parameter in self.parameters:
            parameter.grad = None
        agent.scaler.scale(loss).backward()
        with torch.no_grad():
            kl_dist = torch_ext.policy_kl(mu.detach(), sigma.detach(), batch.mu, batch.sigma, True)
        grads = tuple(parameter.grad for parameter in self.parameters)
        return a_loss, c_loss, entropy, kl_dist, mu.detach(), sigma.detach(), b_loss, action_log_probs, grads
