"""Where a critic's verdicts go wrong in the loop: a `lightning-asym test` run's reviews, by round.

`tools/critic_errors.py` breaks down scores on the calibration split, where each proposal is
reviewed once. In the loop a flagged proposal is proposed again, and reviewed again, so the
loop's precision differs. This tool reads the trajectories a `test` run wrote
(`<log_dir>/trajectories/test.jsonl`: each turn's proposals with the critic's verdict and the
env's label) and counts, per review round (`first`: a turn's first proposal; `revision`: one
proposed after a revision request):

- flags and passes of faulty and of correct proposals;
- among revisions, those that repeat the rejected proposal word for word (a correct action the
  actor keeps after a false alarm is flagged again by a critic that sees the same input);
- the faulty first proposals the critic let through, by the env's reason and tool, with how many
  of their episodes failed.

    python tools/loop_errors.py runs/supervise_tuned_privileged/version_0/trajectories/test.jsonl

The last line is one JSON object of the same figures.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from lightning_asym.metrics import review_outcome


def reason(label: dict[str, Any]) -> str:
    return str(label.get("rule") or ("off plan" if label.get("deviation") else "other"))


def breakdown(episodes: list[dict[str, Any]]) -> dict[str, Any]:
    rounds: dict[str, Counter[str]] = {"first": Counter(), "revision": Counter()}
    missed: Counter[tuple[str, str]] = Counter()
    missed_failed: Counter[tuple[str, str]] = Counter()
    for ep in episodes:
        for turn in ep.get("turns", []):
            previous = None
            for i, prop in enumerate(turn.get("proposals", [])):
                review = prop.get("review")
                if review is None:  # not reviewed (no critic, or the fallback went out)
                    continue
                text = prop.get("text", "").strip()
                repeat, previous = previous == text, text
                outcome = review_outcome(prop.get("label"), review.get("verdict") == "revise")
                if outcome is None:  # no env label: not scored, as in the run's critic_precision
                    continue
                counts = rounds["first" if i == 0 else "revision"]
                counts[outcome] += 1
                if repeat:
                    counts["repeat_" + outcome] += 1
                if i == 0 and outcome == "fn":
                    key = (reason(prop["label"]), (prop.get("action") or {}).get("name", "?"))
                    missed[key] += 1
                    missed_failed[key] += not ep.get("success", False)

    def summary(c: Counter[str]) -> dict[str, Any]:
        tp, fp, fn = c["tp"], c["fp"], c["fn"]
        return {
            **{k: c[k] for k in ("tp", "fp", "fn", "tn")},
            **{k: c[k] for k in sorted(c) if k.startswith("repeat_")},
            "precision": round(tp / (tp + fp), 3) if tp + fp else None,
            "recall": round(tp / (tp + fn), 3) if tp + fn else None,
        }

    total = rounds["first"] + rounds["revision"]
    return {
        "episodes": len(episodes),
        "first": summary(rounds["first"]),
        "revision": summary(rounds["revision"]),
        "all": summary(total),
        "missed_first": [
            {"reason": r, "tool": t, "n": n, "episodes_failed": missed_failed[(r, t)]}
            for (r, t), n in missed.most_common()
        ],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("trajectories", help="a test run's trajectories/test.jsonl")
    args = p.parse_args(argv)
    path = Path(args.trajectories)
    if not path.is_file():
        sys.exit(
            f"{path}: no such file; give <log_dir>/trajectories/test.jsonl of a `lightning-asym test` run"
        )
    episodes = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    out = breakdown(episodes)
    print(f"{out['episodes']} episodes")
    for name in ("first", "revision", "all"):
        s = out[name]
        print(
            f"  {name:<9} flagged {s['tp']} faulty + {s['fp']} correct (precision {s['precision']}), "
            f"passed {s['fn']} faulty + {s['tn']} correct (recall {s['recall']})"
        )
        if name == "revision":
            print(
                f"            of these, repeats of the rejected proposal: flagged again {s.get('repeat_fp', 0)} "
                f"correct + {s.get('repeat_tp', 0)} faulty, passed {s.get('repeat_tn', 0)} correct + "
                f"{s.get('repeat_fn', 0)} faulty"
            )
    print("\nfaulty first proposals let through (episodes failed):")
    for m in out["missed_first"]:
        print(f"  {m['n']:>4} ({m['episodes_failed']:>3})  {m['reason']}: {m['tool']}")
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
