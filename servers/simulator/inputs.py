"""Reading generation parameters from request bodies, with errors that name the field.

Prompt length in tokens is counted as whitespace-separated words (a token-id list counts one
token per id): simple, deterministic, and easy for a load generator to aim at exactly.
"""
from __future__ import annotations


class BadInput(ValueError):
    """A request field with a bad value; the message names the field and what is accepted."""


def count_words(text: str) -> int:
    return len(text.split())


MAX_PROMPTS = 1024   # prompts in one completions request (a bound, so no body fans out forever)


def _token_ids(value) -> bool:
    return (isinstance(value, list) and bool(value)
            and all(isinstance(p, int) and not isinstance(p, bool) for p in value))


def completion_prompts(body: dict) -> list[tuple[str, int]]:
    """[(prompt key, prompt tokens)] of an OpenAI completions body, one per prompt: `prompt`
    is a string, a list of token ids, or a list of several of either (a batched request)."""
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return [(prompt, count_words(prompt))]
    if _token_ids(prompt):
        return [(" ".join(map(str, prompt)), len(prompt))]
    if isinstance(prompt, list) and 1 <= len(prompt) <= MAX_PROMPTS:
        prompts = []
        for number, item in enumerate(prompt):
            if isinstance(item, str):
                prompts.append((item, count_words(item)))
            elif _token_ids(item):
                prompts.append((" ".join(map(str, item)), len(item)))
            else:
                raise BadInput(f"field 'prompt[{number}]' must be a string or a non-empty "
                               "list of token ids")
        return prompts
    raise BadInput("field 'prompt' must be a string, a non-empty list of token ids, or a list "
                   f"of 1 to {MAX_PROMPTS} prompts (strings or token-id lists)")


def chat_prompt(body: dict) -> tuple[str, int]:
    """(prompt key, prompt tokens) of a chat body's `messages` (content string or text parts)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadInput("field 'messages' must be a non-empty list of {role, content} objects")
    texts = []
    for number, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
        if content is None and isinstance(message, dict) and "role" in message:
            content = ""   # e.g. an assistant message carrying only tool calls
        if not isinstance(content, str):
            raise BadInput(f"field 'messages[{number}].content' must be a string or a list of "
                           "text parts")
        texts.append(content)
    text = "\n".join(texts)
    return text, count_words(text)


def output_length(body: dict, *names: str, default: int, limit: int) -> int:
    """The first of `names` present in body, as an int in 1..limit; `default` if none is."""
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
            raise BadInput(f"field '{name}'={value!r} must be an integer from 1 to {limit} "
                           "(the simulated context, --kv-cache-tokens)")
        return value
    return default
