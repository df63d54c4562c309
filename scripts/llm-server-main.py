"""Starts llama-cpp-python's OpenAI-compatible server (`python -m llama_cpp.server ARGS...`)
with every generation bounded.

Why: with `tools` and `tool_choice: "auto"`, the chat format `chatml-function-calling`
(llama_cpp/llama_chat_format.py, `chatml_function_calling`, llama-cpp-python 0.3.x) calls
`Llama.create_completion` with `max_tokens=None` for the answer and for each tool call's
arguments, whatever the request's `max_tokens`: "up to the context window". A small model
under a JSON grammar may then write whitespace for thousands of tokens, and a whole
(non-streamed) answer is not stopped when its client gives up, so the server stays busy for
many minutes and every later request waits behind it.

Here `max_tokens` of None (or 0 or less) becomes ORCH_LLM_MAX_TOKENS (default 512): a bound on
every generation. A request's own positive `max_tokens` is kept as it is.
"""

import os
import runpy

import llama_cpp

CAP = int(os.environ.get("ORCH_LLM_MAX_TOKENS", "512"))
_create_completion = llama_cpp.Llama.create_completion


def _bounded_create_completion(self, *args, **kwargs):
    # `prompt` and `suffix` may come positionally; `max_tokens` is the third parameter.
    if len(args) >= 3:
        args = list(args)
        if args[2] is None or args[2] <= 0:
            args[2] = CAP
    elif kwargs.get("max_tokens", 16) is None or kwargs.get("max_tokens", 16) <= 0:
        kwargs["max_tokens"] = CAP
    return _create_completion(self, *args, **kwargs)


llama_cpp.Llama.create_completion = _bounded_create_completion
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
