"""Users for τ-bench episodes that need no litellm: a scripted one and an LLM one of ours.

Any `UserSimulator` (`reset(task, seed)`, `respond(text)`) can play τ-bench's user: the
adapter puts a `UserBridge` where τ-bench keeps its user (`env.user`), so τ-bench's env,
STOP rule and reward are untouched.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Hashable, Sequence
from typing import Any

from lightning_asym.backends.base import ChatBackend, Completion, SamplingParams
from lightning_asym.envs.tau_bench.loader import LITELLM_HINT, import_tau_bench, litellm_available
from lightning_asym.envs.users import STOP, LLMUser, UserSimulator
from lightning_asym.types import Task


class UserBridge:
    """τ-bench's user interface (`reset(instruction)`, `step(content)`, `get_total_cost()`) over one of ours."""

    def __init__(self, user: UserSimulator, task: Task, seed: int) -> None:
        self.user, self.task, self.seed = user, task, seed

    def reset(self, instruction: str | None = None) -> str:
        return self.user.reset(self.task, self.seed)

    def step(self, content: str) -> str:
        return self.user.respond(content)

    def get_total_cost(self) -> float:
        return 0.0

    def close(self) -> None:
        close = getattr(self.user, "close", None)
        if close is not None:
            close()


CONFIRM_WORDS = (
    "confirm",
    "proceed",
    "go ahead",
    "shall i",
    "should i",
    "would you like me",
    "do you want me",
)


class TauScriptedUser:
    """A user without a model: states its whole instruction, says yes when asked to confirm an
    action, and otherwise ends the conversation politely (`###STOP###`).

    It is the user of the offline gold replay and of the noisy-oracle results: the actor is
    expected to know the task, so the user never needs to reveal details turn by turn.

    Args:
        max_confirmations: after this many yeses the user ends the episode anyway, so an actor
            that keeps asking cannot loop until `max_turns`.
    """

    def __init__(self, max_confirmations: int = 5) -> None:
        self.max_confirmations = max_confirmations
        self._yeses = 0

    def reset(self, task: Task, seed: int = 0) -> str:
        self._yeses = 0
        return f"Hi. Here is my situation: {task.instruction}"

    def respond(self, agent_text: str) -> str:
        text = agent_text.lower()
        if "?" in text and any(w in text for w in CONFIRM_WORDS) and self._yeses < self.max_confirmations:
            self._yeses += 1
            return "Yes, please go ahead."
        return f"Thank you, that is all I needed. {STOP}"


class LiteLLMChat(ChatBackend):
    """A chat backend over `litellm.completion`, for a user model of any litellm provider."""

    def __init__(self, model: str, provider: str, base_url: str | None, api_key_env: str | None) -> None:
        self.model, self.provider, self.base_url, self.api_key_env = model, provider, base_url, api_key_env

    def complete(
        self,
        conversations: Sequence[Sequence[Any]],
        tools: list[dict[str, Any]] | None = None,
        sampling: SamplingParams | None = None,
        *,
        keys: Sequence[Hashable] | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[Completion]:
        if not litellm_available():
            raise ImportError(LITELLM_HINT)
        import litellm

        s = sampling or SamplingParams()
        extra: dict[str, Any] = {}
        if self.base_url:
            extra["api_base"] = self.base_url
        if self.api_key_env and os.environ.get(self.api_key_env):
            extra["api_key"] = os.environ[self.api_key_env]
        out = []
        for conv in conversations:
            res = litellm.completion(
                model=self.model,
                custom_llm_provider=self.provider,
                messages=[{"role": m.role, "content": m.content or ""} for m in conv],
                max_tokens=s.max_new_tokens,
                temperature=s.temperature,
                **extra,
            )
            out.append(Completion(text=res.choices[0].message.content or "", action=None))
        return out


class TauLLMUser(LLMUser):
    """τ-bench's LLM user (its own system prompt and opener), played by a model you choose.

    `provider: openai` (the default) talks to any OpenAI-compatible endpoint at `base_url`
    (a local `vllm serve`/`transformers serve`, or OpenAI itself when `base_url` is None)
    through our `OpenAIBackend`, without litellm; any other provider goes through litellm.

    Args:
        model: the user model's name at the endpoint.
        base_url: the endpoint (`http://127.0.0.1:8000/v1`); None: the provider's default.
        provider: `openai` (any OpenAI-compatible server) or a litellm provider name.
        api_key_env: the environment variable holding the key (unset: a placeholder is sent).
        max_tokens, temperature: the user's sampling settings.
    """

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        provider: str = "openai",
        api_key_env: str = "OPENAI_API_KEY",
        max_tokens: int = 256,
        temperature: float = 0.0,
    ) -> None:
        sampling = SamplingParams(max_new_tokens=max_tokens, temperature=temperature)
        backend: ChatBackend
        if provider == "openai":
            from lightning_asym.backends.openai import OpenAIBackend

            backend = OpenAIBackend(
                base_url=base_url or "https://api.openai.com/v1",
                model=model,
                api_key_env=api_key_env,
                sampling=sampling,
                tool_calls="text",  # the user has no tools; nothing goes in the API's `tools`
                config_key="data.init_args.env.init_args.user.init_args",
            )
        else:
            backend = LiteLLMChat(model, provider, base_url, api_key_env)
        super().__init__(backend, sampling=sampling, prompt=tau_user_prompt())
        self.model, self.base_url, self.provider = model, base_url, provider


def tau_user_prompt() -> str:
    """τ-bench's LLM-user system prompt as an `LLMUser` template (`{instruction}`, `{stop}`)."""
    import_tau_bench()  # with the litellm stand-in if need be
    user_mod = importlib.import_module("tau_bench.envs.user")
    mark = "\x00INSTRUCTION\x00"
    # build_system_prompt reads nothing of its instance; we borrow it rather than copy its text
    text = user_mod.LLMUserSimulationEnv.build_system_prompt(None, instruction=mark)
    return text.replace("{", "{{").replace("}", "}}").replace(mark, "{instruction}")
