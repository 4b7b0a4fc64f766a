#!/usr/bin/env python3
"""Reads a TensorBoard logdir with TensorBoard's own EventAccumulator and prints it as JSON.

What `coordinator export tensorboard` and `--tensorboard DIR` write is checked with it
(tests/tests/tensorboard.rs): the files are read by the `tensorboard` package itself
(`pip install tensorboard`), not by our own reader.

Usage: tensorboard_readback.py LOGDIR [--sample N]

Output: {"runs": {RUN: {"scalars": {TAG: [[step, value], ...]},
                        "texts": {TAG: [[step, "text"], ...]},
                        "session_start_info": {NAME: {KIND: value}} | null,
                        "experiment": {"hparams": [...], "metrics": [[group, tag], ...]} | null}},
         "run_count": N}
RUN is the folder relative to LOGDIR ("." for LOGDIR itself); KIND is the google.protobuf.Value
arm (number_value, string_value, bool_value). Values that are not finite are written as the
strings "nan", "inf", "-inf". Every event is kept (no reservoir sampling), in the order read.
With --sample N, only N runs spread evenly over the sorted list are read (and "." always), for a
logdir too large to print. Exits 3 when tensorboard cannot be imported.
"""

import json
import math
import os
import sys

try:
    from tensorboard.backend.event_processing import event_accumulator as ea
    from tensorboard.plugins.hparams import plugin_data_pb2
    from tensorboard.util import tensor_util
except ImportError as e:  # pragma: no cover
    print("cannot import tensorboard: %s" % e, file=sys.stderr)
    sys.exit(3)


def run_dirs(logdir):
    for root, _dirs, files in os.walk(logdir):
        if any("tfevents" in f for f in files):
            yield os.path.relpath(root, logdir), root


def number(x):
    if isinstance(x, float) and not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


def pb_value(v):
    """google.protobuf.Value -> {"number_value": 1.5} etc. (keeps the kind)."""
    kind = v.WhichOneof("kind")
    return {kind: number(getattr(v, kind))}


def plugin_tags(acc, plugin_name):
    """{tag: plugin content bytes}; {} when the run has no such plugin."""
    try:
        return acc.PluginTagToContent(plugin_name)
    except KeyError:
        return {}


def experiment_of(exp):
    return {
        "hparams": [
            {
                "name": h.name,
                "type": h.type,
                "differs": h.differs,
                "domain_discrete": (
                    [pb_value(v) for v in h.domain_discrete.values]
                    if h.HasField("domain_discrete")
                    else None
                ),
            }
            for h in exp.hparam_infos
        ],
        "metrics": [[m.name.group, m.name.tag] for m in exp.metric_infos],
    }


def read_run(path):
    # 0 = keep every event, no reservoir sampling.
    acc = ea.EventAccumulator(path, size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})
    acc.Reload()
    tags = acc.Tags()
    out = {"scalars": {}, "texts": {}, "session_start_info": None, "experiment": None}
    for tag in tags[ea.SCALARS]:
        out["scalars"][tag] = [[e.step, number(e.value)] for e in acc.Scalars(tag)]
    text_tags = set(plugin_tags(acc, "text"))
    for tag in tags[ea.TENSORS]:
        if tag in text_tags:
            out["texts"][tag] = [
                [e.step, tensor_util.make_ndarray(e.tensor_proto).item().decode("utf-8")]
                for e in acc.Tensors(tag)
            ]
    for _tag, content in plugin_tags(acc, "hparams").items():
        data = plugin_data_pb2.HParamsPluginData.FromString(content)
        assert data.version == 0, data
        if data.HasField("session_start_info"):
            info = data.session_start_info
            out["session_start_info"] = {k: pb_value(v) for k, v in info.hparams.items()}
        elif data.HasField("experiment"):
            out["experiment"] = experiment_of(data.experiment)
    return out


def main():
    args = sys.argv[1:]
    sample = None
    if "--sample" in args:
        i = args.index("--sample")
        sample = int(args[i + 1])
        del args[i : i + 2]
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    logdir = args[0]
    found = sorted(run_dirs(logdir))
    chosen = found
    if sample is not None and sample < len(found):
        step = len(found) / sample
        chosen = [found[int(i * step)] for i in range(sample)]
        chosen += [r for r in found if r[0] == "." and r not in chosen]
    runs = {name: read_run(path) for name, path in chosen}
    json.dump({"runs": runs, "run_count": len(found)}, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
