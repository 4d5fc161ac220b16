#!/usr/bin/env python3
"""Checks a headroom server with the official, unmodified `openai` Python client.

    python3 scripts/openai_client_check.py http://127.0.0.1:8080/v1 [--max-tokens 8]

Lists the models, runs chat completions (whole and streamed, with usage), a text
completion, several chats at once, and requests the server must refuse. Prints one line
per check and exits non-zero if any fails. Works against any model: it checks shapes,
token accounting and that greedy streamed and whole replies agree, not the text itself.
"""

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor

import openai
from openai import OpenAI

FINISH_REASONS = {"stop", "length"}


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def check_usage(usage, max_tokens):
    check(usage is not None, "no usage")
    check(usage.prompt_tokens > 0, f"prompt_tokens = {usage.prompt_tokens}")
    check(
        0 <= usage.completion_tokens <= max_tokens,
        f"completion_tokens = {usage.completion_tokens} with max_tokens = {max_tokens}",
    )
    check(
        usage.total_tokens == usage.prompt_tokens + usage.completion_tokens,
        f"total_tokens = {usage.total_tokens} is not prompt + completion",
    )


def check_finish(finish_reason, usage, max_tokens):
    check(finish_reason in FINISH_REASONS, f"finish_reason = {finish_reason!r}")
    if usage.completion_tokens == max_tokens:
        check(finish_reason == "length", "max_tokens reached but finish_reason is not length")


class Checks:
    def __init__(self, client, model, max_tokens):
        self.client = client
        self.model = model
        self.max_tokens = max_tokens
        self.greedy_chat_text = None

    def chat(self, content, **kwargs):
        return self.client.chat.completions.create(
            model=self.model,
            messages=[
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": content},
            ],
            max_tokens=self.max_tokens,
            **kwargs,
        )

    def models(self):
        ids = [m.id for m in self.client.models.list()]
        check(self.model in ids, f"{self.model} not in {ids}")
        card = self.client.models.retrieve(self.model)
        check(card.id == self.model, f"retrieve gave {card.id}")
        return f"{ids}"

    def chat_whole(self):
        r = self.chat("Name three colours.", temperature=0, seed=1)
        check(r.object == "chat.completion", f"object = {r.object}")
        check(r.id.startswith("chatcmpl-"), f"id = {r.id}")
        check(len(r.choices) == 1, f"{len(r.choices)} choices")
        message = r.choices[0].message
        check(message.role == "assistant", f"role = {message.role}")
        check(isinstance(message.content, str), "content is not a string")
        check_usage(r.usage, self.max_tokens)
        check_finish(r.choices[0].finish_reason, r.usage, self.max_tokens)
        self.greedy_chat_text = message.content
        return f"{message.content!r} ({r.choices[0].finish_reason}, {r.usage.completion_tokens} tokens)"

    def chat_stream(self):
        stream = self.chat(
            "Name three colours.",
            temperature=0,
            seed=1,
            stream=True,
            stream_options={"include_usage": True},
        )
        deltas, finishes, usage, roles = [], [], None, []
        for chunk in stream:
            check(chunk.object == "chat.completion.chunk", f"object = {chunk.object}")
            if chunk.usage is not None:
                check(chunk.choices == [], "the usage chunk has choices")
                usage = chunk.usage
            for choice in chunk.choices:
                if choice.delta.role:
                    roles.append(choice.delta.role)
                if choice.delta.content:
                    deltas.append(choice.delta.content)
                if choice.finish_reason:
                    finishes.append(choice.finish_reason)
        check(roles == ["assistant"], f"roles {roles}")
        check(len(finishes) == 1, f"finish reasons {finishes}")
        check_usage(usage, self.max_tokens)
        check_finish(finishes[0], usage, self.max_tokens)
        text = "".join(deltas)
        if self.greedy_chat_text is not None:
            check(
                text == self.greedy_chat_text,
                f"streamed {text!r} but the whole reply was {self.greedy_chat_text!r}",
            )
        return f"{len(deltas)} deltas, {finishes[0]}, usage {usage.completion_tokens} tokens"

    def completion(self):
        r = self.client.completions.create(
            model=self.model,
            prompt="The capital of France is",
            max_tokens=self.max_tokens,
            temperature=0,
        )
        check(r.object == "text_completion", f"object = {r.object}")
        check(r.id.startswith("cmpl-"), f"id = {r.id}")
        check(len(r.choices) == 1, f"{len(r.choices)} choices")
        check(isinstance(r.choices[0].text, str), "text is not a string")
        check_usage(r.usage, self.max_tokens)
        check_finish(r.choices[0].finish_reason, r.usage, self.max_tokens)
        return f"{r.choices[0].text!r} ({r.choices[0].finish_reason})"

    def concurrent(self):
        prompts = [f"Count to {n}." for n in range(2, 6)]
        with ThreadPoolExecutor(max_workers=len(prompts)) as pool:
            replies = list(pool.map(lambda p: self.chat(p, temperature=0.7, seed=3), prompts))
        for r in replies:
            check(isinstance(r.choices[0].message.content, str), "content is not a string")
            check_usage(r.usage, self.max_tokens)
        check(len({r.id for r in replies}) == len(replies), "request ids repeat")
        return f"{len(replies)} chats at once"

    def choices_and_logprobs(self):
        r = self.chat("Name a colour.", n=2, temperature=0.8, seed=5, logprobs=True, top_logprobs=2)
        check(len(r.choices) == 2, f"{len(r.choices)} choices")
        check([c.index for c in r.choices] == [0, 1], "choice indices")
        for c in r.choices:
            content = c.logprobs.content
            check(len(content) >= 1, "no token logprobs")
            for t in content:
                check(t.logprob <= 0, f"logprob {t.logprob}")
                check(len(t.top_logprobs) == 2, f"{len(t.top_logprobs)} alternatives")
                check(bytes(t.bytes).decode("utf-8", "replace") == t.token or not t.bytes, "bytes")
        scored = sum(len(c.logprobs.content) for c in r.choices)
        check(r.usage.completion_tokens == scored, "usage counts every choice's tokens")
        c = self.client.completions.create(
            model=self.model, prompt="The capital of France is", max_tokens=1,
            temperature=0, logprobs=1, echo=True,
        )
        lp = c.choices[0].logprobs
        check(c.choices[0].text.startswith("The capital of France is"), "echo")
        check(lp.token_logprobs[0] is None, "the first prompt token has no logprob")
        check(all(x is not None and x <= 0 for x in lp.token_logprobs[1:]), "prompt scored")
        check(len(lp.tokens) == len(lp.text_offset) == len(lp.top_logprobs), "parallel lists")
        return f"2 choices, {len(lp.tokens)} echoed tokens scored"

    def errors(self):
        expected = [
            ("n=0", openai.BadRequestError, lambda: self.chat("Hi", n=0)),
            (
                "top_logprobs without logprobs",
                openai.BadRequestError,
                lambda: self.chat("Hi", top_logprobs=2),
            ),
            ("temperature=-1", openai.BadRequestError, lambda: self.chat("Hi", temperature=-1)),
            (
                "unknown model",
                openai.NotFoundError,
                lambda: self.client.chat.completions.create(
                    model="no-such-model", messages=[{"role": "user", "content": "Hi"}]
                ),
            ),
        ]
        for name, error, call in expected:
            try:
                call()
            except error as e:
                check(isinstance(e.body, dict) and e.body.get("message"), f"{name}: body {e.body}")
                continue
            raise AssertionError(f"{name}: no {error.__name__}")
        return ", ".join(name for name, _, _ in expected) + " refused"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base_url", help="e.g. http://127.0.0.1:8080/v1")
    parser.add_argument("--model", help="model id (default: the first of /v1/models)")
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    args = parser.parse_args()

    client = OpenAI(base_url=args.base_url, api_key="none", max_retries=0, timeout=args.timeout)
    try:
        model = args.model or client.models.list().data[0].id
    except Exception as e:  # noqa: BLE001 - any failure here ends the run
        print(f"FAIL models: {type(e).__name__}: {e}")
        return 1

    checks = Checks(client, model, args.max_tokens)
    names = [
        "models",
        "chat_whole",
        "chat_stream",
        "completion",
        "concurrent",
        "choices_and_logprobs",
        "errors",
    ]
    failed = 0
    for name in names:
        try:
            print(f"ok   {name}: {getattr(checks, name)()}", flush=True)
        except Exception as e:  # noqa: BLE001 - report every check, then fail
            failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
    print(f"{len(names) - failed}/{len(names)} checks passed (openai {openai.__version__})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
