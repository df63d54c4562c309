"""The workloads of scripts/bench-peers.sh, one definition shared by every runner.

A workload is a list of layers, each a list of steps; every step is one chat completion. A
step of layer `l` starts once every step of layer `l - 1` has finished (orch's rule 6: a
statement after a `parallel` block waits for the whole block; LangGraph's supersteps; the
floor's `asyncio.gather` per layer), and its prompt quotes the answer of the step it follows
(`deps`), so the data flows the same way in all three.

- `dag-1k`:  10 layers of 100 steps (1,000 calls).
- `dag-10k`: 100 layers of 100 steps (10,000 calls).
- `fanout-100`: a `parallel for` over 100 items, then one gather step quoting all 100
  answers (101 calls).
"""

import json
import math

WIDTH = 100


class Workload:
    def __init__(self, name, layers, orch_text, orch_inputs):
        # layers: [[(step_name, [dep_names])]]
        self.name = name
        self.layers = layers
        self.orch_text = orch_text
        self.orch_inputs = orch_inputs

    @property
    def steps(self):
        return sum(len(layer) for layer in self.layers)

    def lower_bound_s(self, cap, delay_s):
        """No runner can beat this: each layer needs ceil(width / cap) rounds of one delay."""
        return sum(math.ceil(len(layer) / cap) for layer in self.layers) * delay_s


def orch_header():
    # Every model goes to the fake server through `orch run --endpoint URL`; the base URL
    # here is never used.
    return (
        'provider fake { kind: openai, base_url: "http://127.0.0.1:9/v1" }\n'
        "model m { provider: fake }\n"
        "agent a { model: m, max_tokens: 16 }\n"
    )


def layered_dag(name, layers):
    steps = []
    text = [orch_header(), "workflow main() {\n"]
    for layer in range(layers):
        row = []
        text.append("  parallel <> {\n")
        for j in range(WIDTH):
            step = f"s{layer}_{j}"
            if layer == 0:
                deps = []
                text.append(f'    {step} = a("task {j} of layer {layer}")\n')
            else:
                dep = f"s{layer - 1}_{j}"
                deps = [dep]
                text.append(f'    {step} = a("task {j} of layer {layer} after: {{{dep}}}")\n')
            row.append((step, deps))
        text.append("  }\n")
        steps.append(row)
    text.append("}\n")
    return Workload(name, steps, "".join(text), [])


def fan_out(name, width):
    items = [f"item {i}" for i in range(width)]
    text = (
        orch_header()
        + "workflow main(items: list<text>) {\n"
        + "  results = parallel for x in items {\n"
        + '    r = a("work on {x}")\n'
        + "  }\n"
        + '  gather <all> summary = a("Summarise:\\n{results}")\n'
        + "  return summary\n"
        + "}\n"
    )
    first = [(f"r{i}", []) for i in range(width)]
    last = [("summary", [s for s, _ in first])]
    return Workload(name, [first, last], text, [f"items={json.dumps(items)}"])


def all_workloads():
    return {
        "dag-1k": layered_dag("dag-1k", 10),
        "dag-10k": layered_dag("dag-10k", 100),
        "fanout-100": fan_out("fanout-100", WIDTH),
    }


def prompt(workload, step, deps, answers):
    """The prompt a Python runner sends for `step` (orch renders its own from the script)."""
    if not deps:
        return f"task {step} of {workload.name}"
    return f"task {step} after: " + "\n".join(answers[d] for d in deps)
