"""`batch` on several models: a model column or key per line, and `--models`."""

from __future__ import annotations

import json
import signal
import sqlite3
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import anyio
import pytest
from cli_support import (
    FakeProcess,
    environment,
    fake_process,
    journal_states,
    results,
    run_cli,
    start_cli,
    wait_for,
)
from postgres_support import sql, with_query

from comet_replicate_async.testing import FakeCometAPI, Latency

SCHNELL = "black-forest-labs/flux-schnell"
DEV = "black-forest-labs/flux-dev"
PRO = "black-forest-labs/flux-1.1-pro"
MODELS = (SCHNELL, DEV, PRO)
PROMPTS = 6
LATENCY = [arg for model in MODELS for arg in ("--latency", f"{model.split('/')[1]}=uniform:0.5:2.0")]  # fmt: skip


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProcess]:
    with fake_process("--default-latency", "0.05") as server:
        yield server


@pytest.fixture
def clean_fake(fake: FakeProcess) -> FakeProcess:
    fake.reset()
    return fake


def prompt_lines(count: int) -> list[str]:
    return [f"a lighthouse at dusk {n}" for n in range(count)]


def csv_of_pairs(folder: Path) -> Path:
    """Every prompt on each of the three models, one `prompt,model` line each."""
    path = folder / "pairs.csv"
    lines = [
        f"{prompt},{model}" for prompt in prompt_lines(PROMPTS) for model in MODELS
    ]
    path.write_text("prompt,model\n" + "\n".join(lines) + "\n")
    return path


def txt_of_prompts(folder: Path) -> Path:
    path = folder / "prompts.txt"
    path.write_text("\n".join(prompt_lines(PROMPTS)) + "\n")
    return path


def command_for(form: str, folder: Path, out: Path) -> list[str]:
    if form == "model column":
        return ["batch", str(csv_of_pairs(folder)), "-o", str(out)]
    return ["batch", str(txt_of_prompts(folder)), "--models", ",".join(MODELS),
            "-o", str(out)]  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("form", ["model column", "--models"])
def test_each_prompt_and_model_pair_is_created_once_and_resumes_after_sigkill(
    tmp_path: Path, form: str
) -> None:
    count = PROMPTS * len(MODELS)
    out = tmp_path / "out"
    # Everything is created at once, then the run is killed while the
    # predictions run (a kill during a create leaves it ambiguous, by design).
    command = [*command_for(form, tmp_path, out), "-c", str(count)]

    with fake_process(*LATENCY) as server:
        child = start_cli(command, server)
        wait_for(
            lambda: (
                journal_states(out).get("created", 0)
                + journal_states(out).get("succeeded", 0)
                == count
            )
        )
        wait_for(lambda: journal_states(out).get("succeeded", 0) >= 2)
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=60)
        rerun = run_cli(command, server)
        stats = server.stats()

    assert child.returncode == -signal.SIGKILL
    assert rerun.returncode == 0, rerun.stderr
    lines = results(out)
    assert [line["index"] for line in lines] == list(range(count))
    assert all(line["outcome"] == "succeeded" for line in lines)
    pairs = Counter((line["input"]["prompt"], line["model"]) for line in lines)
    assert set(pairs) == {(p, m) for p in prompt_lines(PROMPTS) for m in MODELS}
    assert max(pairs.values()) == 1
    # Created once each, on its own model.
    assert stats["created"] == count
    assert stats["duplicates"] == 0
    for line in lines:
        prediction = stats["predictions"][line["prediction_id"]]
        assert (prediction["model"], prediction["input"]["prompt"]) == (
            line["model"],
            line["input"]["prompt"],
        )
    with closing(sqlite3.connect(out / "journal.sqlite3")) as journal:
        recorded = dict(journal.execute('select "index", model from items'))
    assert recorded == {line["index"]: line["model"] for line in lines}


@pytest.mark.parametrize("form", ["model column", "--models"])
def test_dry_run_shows_one_row_per_model(
    clean_fake: FakeProcess, tmp_path: Path, form: str
) -> None:
    command = [*command_for(form, tmp_path, tmp_path / "out"), "--dry-run"]
    prices = [f"--price={model}=0.01" for model in MODELS[:2]]

    as_json = run_cli([*command, *prices, "--json"], clean_fake)
    table = run_cli([*command, *prices], clean_fake)

    assert as_json.returncode == 0, as_json.stderr
    estimate = json.loads(as_json.stdout)
    assert [row["model"] for row in estimate["models"]] == list(MODELS)
    assert [row["count"] for row in estimate["models"]] == [PROMPTS] * 3
    assert [row["unit_price"] for row in estimate["models"][:2]] == [0.01, 0.01]
    assert estimate["models"][2]["source"] in ("catalogue", "fallback", "cache")
    assert table.returncode == 0, table.stderr
    for model in MODELS:
        assert f"price of {model}:" in table.stdout
    # One row per model, then the total (a narrow terminal may cut a name short).
    rows = [line for line in table.stdout.splitlines() if line.startswith("│")]
    assert len(rows) == len(MODELS) + 1
    assert rows[-1].startswith("│ total")
    assert "create" not in clean_fake.stats()["requests"]
    assert not (tmp_path / "out").exists()


def test_a_jsonl_model_key_wins_over_the_default_model(
    clean_fake: FakeProcess, tmp_path: Path
) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(
        f'{{"prompt": "an owl", "model": "{DEV}"}}\n{{"prompt": "an owl"}}\n'
    )
    out = tmp_path / "out"

    done = run_cli(["batch", str(path), "-m", SCHNELL, "-o", str(out), "--json"],
                   clean_fake)  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert [line["model"] for line in results(out)] == [DEV, SCHNELL]
    assert [line["input"] for line in results(out)] == [{"prompt": "an owl"}] * 2
    summary = json.loads(done.stdout)
    assert set(summary["cost"]["models"]) == {DEV, SCHNELL}
    assert clean_fake.stats()["created"] == 2


def test_a_line_without_a_model_and_no_default_is_refused_unsent(
    clean_fake: FakeProcess, tmp_path: Path
) -> None:
    path = tmp_path / "p.csv"
    path.write_text(f"prompt,model\nan owl,{DEV}\na fox,\n")

    done = run_cli(["batch", str(path), "-o", str(tmp_path / "out")], clean_fake)

    assert done.returncode == 2
    assert "p.csv:3: no model for this line" in done.stderr
    assert "nothing was sent" in done.stderr
    assert clean_fake.stats()["created"] == 0


def test_model_and_models_together_are_refused(
    clean_fake: FakeProcess, tmp_path: Path
) -> None:
    done = run_cli(
        ["batch", str(txt_of_prompts(tmp_path)), "-m", SCHNELL, "--models",
         f"{DEV},{PRO}", "-o", str(tmp_path / "out")],
        clean_fake,
    )  # fmt: skip

    assert done.returncode == 2
    assert "--model or --models, not both" in done.stderr
    assert clean_fake.stats()["created"] == 0


@pytest.mark.anyio
async def test_a_shared_batch_records_each_items_model(
    postgres_url: str, tmp_path: Path
) -> None:
    journal = with_query(postgres_url, batch="models")
    out = tmp_path / "out"
    arguments = [sys.executable, "-m", "comet_replicate_async",
                 *command_for("--models", tmp_path, out), "--journal", journal]  # fmt: skip
    async with FakeCometAPI(default_latency=Latency.constant(0.02)) as fake:
        with anyio.fail_after(60):
            done = await anyio.run_process(
                arguments, env=environment(fake), check=False
            )
        created = fake.stats.created

    assert done.returncode == 0, done.stderr.decode()
    lines = results(out)
    assert len(lines) == PROMPTS * len(MODELS)
    assert created == PROMPTS * len(MODELS)
    rows = await sql(postgres_url, 'select "index", model from comet_replicate.items')
    assert dict(rows) == {line["index"]: line["model"] for line in lines}


def test_a_folder_from_before_models_were_recorded_resumes_on_its_model(
    clean_fake: FakeProcess, tmp_path: Path
) -> None:
    prompts = txt_of_prompts(tmp_path)
    out = tmp_path / "out"
    first = run_cli(["batch", str(prompts), "-m", SCHNELL, "-o", str(out)], clean_fake)
    # As the code before models were recorded left the folder: no model column,
    # schema 1, and the batch's one model beside the items.
    with closing(sqlite3.connect(out / "journal.sqlite3")) as journal, journal:
        journal.execute("alter table items drop column model")
        journal.execute("insert into meta (key, value) values ('model', ?)", (SCHNELL,))
        journal.execute("pragma user_version = 1")

    again = run_cli(
        ["batch", str(prompts), "-m", SCHNELL, "-o", str(out), "--json"], clean_fake
    )
    other = run_cli(["batch", str(prompts), "-m", DEV, "-o", str(out)], clean_fake)

    assert first.returncode == 0, first.stderr
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["resumed"] == PROMPTS
    assert [line["model"] for line in results(out)] == [SCHNELL] * PROMPTS
    assert other.returncode == 2
    assert f"runs {SCHNELL}, not {DEV}" in other.stderr
    assert clean_fake.stats()["created"] == PROMPTS


def test_max_cost_and_the_summary_price_each_model_on_its_own(
    clean_fake: FakeProcess, tmp_path: Path
) -> None:
    # Three prompts on two models, at $0.01 and $0.02 an image, one at a time:
    # $0.05 covers the first three items (0.01 + 0.02 + 0.01), not the fourth
    # (0.02 more), but the fifth (0.01 more) still fits; the sixth does not.
    path = tmp_path / "p.txt"
    path.write_text("an owl\na fox\na heron\n")
    out = tmp_path / "out"
    command = ["batch", str(path), "--models", f"{SCHNELL},{DEV}", "-o", str(out),
               "-c", "1", "--max-cost", "0.05", f"--price={SCHNELL}=0.01",
               f"--price={DEV}=0.02"]  # fmt: skip

    dry = run_cli([*command, "--dry-run"], clean_fake)
    done = run_cli([*command, "--json"], clean_fake)

    assert dry.returncode == 0, dry.stderr
    assert "covers the first 3 of 6 inputs" in dry.stdout
    assert done.returncode == 1, done.stderr
    lines = results(out)
    outcomes = [line["outcome"] for line in lines]
    assert outcomes == ["succeeded"] * 3 + ["not started", "succeeded", "not started"]
    assert [line["model"] for line in lines] == [SCHNELL, DEV] * 3
    assert [line["cost"] for line in lines] == [0.01, 0.02, 0.01, 0.0, 0.01, 0.0]
    cost = json.loads(done.stdout)["cost"]
    assert cost["spent"] == pytest.approx(0.05)
    assert cost["models"][SCHNELL]["spent"] == pytest.approx(0.03)
    assert cost["models"][DEV]["spent"] == pytest.approx(0.02)
    assert cost["models"][DEV]["price"] == 0.02
    assert clean_fake.stats()["created"] == 4
