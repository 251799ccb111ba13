"""Smoke runs of the bench scripts so they do not rot. No timing assertions: benchmarks print ratios."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_lato_quick_runs_and_its_analytic_ratios_are_consistent():
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_lato.py"), "--quick"], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for label in ("(a) no landmarks", "(b) 68 landmark tokens", "(c) landmark image +N"):
        assert out.count(label) == 1 + 3, label   # once measured, once per resolution 512 / 768 / 1024

    def step_ratio(case: str) -> float:  # "x(a) step" column of the 512 row: the second-to-last number
        match = re.search(rf"^\s*512\s+1024\s+\({case}\).*?([\d.]+)\s+([\d.]+)\s*$", out, re.MULTILINE)
        assert match, f"no 512 row for ({case})"
        return float(match.group(1))

    assert 1.0 < step_ratio("b") < 1.05
    assert step_ratio("c") > 1.3
    differences = [float(d) for d in re.findall(r"max relative difference ([\d.e+-]+)", out)]
    assert len(differences) == 2 and max(differences) < 1e-9   # formulas == torch's FLOP counter
    assert re.search(r"^\s*fp8\s+[\d.]+\s+0\.5\d\s", out, re.MULTILINE)   # fp8 weights about half of bf16


def test_bench_lato_native_prints_memory_per_budget_and_both_step_times():
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_lato_native.py"), "--steps", "1",
                             "--repeats", "1", "--crop", "128"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    bf16 = re.search(r"^\s*bf16\s+([\d.]+)\s", out, re.MULTILINE)
    fp8 = re.search(r"^\s*fp8\s+([\d.]+)\s", out, re.MULTILINE)
    assert bf16 and fp8 and 22 < float(bf16.group(1)) < 25 and abs(float(fp8.group(1)) / float(bf16.group(1)) - 0.5) < 0.01
    bf16_row = next(line for line in out.splitlines() if line.strip().startswith("bf16"))
    assert bf16_row.count("(partial)") == 4   # 23 GB of bf16 weights never load whole under 24 GB with inference
    fp8_row = next(line for line in out.splitlines() if line.strip().startswith("fp8"))
    assert fp8_row.count("(partial)") == 2    # fp8 loads whole from 16 GB on
    assert re.search(r"native \(core CFGGuider \+ euler\)\s+[\d.]+ ms/step", out)
    assert re.search(r"standalone engine\s+[\d.]+ ms/step\s+ratio to engine\s+1\.00", out)


def test_bench_stfg_prints_time_and_peak_memory_side_by_side():
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_stfg.py"), "--latent", "8", "--repeats", "1"],
                            cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    plain = re.search(r"unguided step\s+[\d.]+ ms \(median\)\s+peak memory\s+([\d.]+) MB", out)
    guided = re.search(r"STFG-guided step\s+[\d.]+ ms \(median\)\s+peak memory\s+([\d.]+) MB", out)
    assert plain and guided and float(guided.group(1)) > 0, out
    assert re.search(r"ratio guided / unguided = [\d.]+ time .*, [\d.]+ peak memory", out)
    assert "copied for the guided step: 0 MB" in out
