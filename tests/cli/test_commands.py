"""The comet-replicate command line, in child processes against a fake in another."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from cli_support import (
    API_KEY,
    FakeProcess,
    fake_process,
    journal_states,
    results,
    run_cli,
    start_cli,
    wait_for,
)

SCHNELL = "black-forest-labs/flux-schnell"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProcess]:
    with fake_process(
        "--latency", "flux-schnell=uniform:0.2:0.6", "--latency", "flux-pro=0.1"
    ) as server:
        yield server


@pytest.fixture
def clean_fake(fake: FakeProcess) -> FakeProcess:
    fake.reset()
    return fake


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def assert_complete_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert data.endswith(b"IEND\xaeB`\x82")  # the last chunk: the file is whole


def test_batch_from_a_text_file(clean_fake: FakeProcess, tmp_path: Path) -> None:
    prompts = write(
        tmp_path / "prompts.txt", "a paper boat\n\n# a comment\nan owl\na fox\n"
    )
    out = tmp_path / "out"

    done = run_cli(
        ["batch", str(prompts), "--model", SCHNELL, "--out", str(out), "--json"],
        clean_fake,
    )

    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["succeeded"] == 3
    lines = results(out)
    assert [line["input"]["prompt"] for line in lines] == [
        "a paper boat",
        "an owl",
        "a fox",
    ]
    assert [line["line"] for line in lines] == [1, 4, 5]
    for line in lines:
        assert line["outcome"] == "succeeded"
        assert line["files"] == [f"{line['index']:05d}-{line['prediction_id']}-0.webp"]
        assert_complete_png(out / line["files"][0])
    gallery = (out / "index.html").read_text()
    assert all(prompt in gallery for prompt in ("a paper boat", "an owl", "a fox"))
    assert "<script" not in gallery
    assert "http" not in gallery.split("<body>")[1]
    assert clean_fake.stats()["created"] == 3


@pytest.mark.slow
def test_jsonl_and_csv_inputs_with_parameters(
    clean_fake: FakeProcess, tmp_path: Path
) -> None:
    jsonl = write(
        tmp_path / "p.jsonl",
        '{"id": "boat", "prompt": "a boat", "num_outputs": 2}\n{"prompt": "an owl"}\n',
    )
    csv = write(
        tmp_path / "p.csv",
        'prompt,num_outputs,megapixels,go_fast\n"a fox, running",2,0.25,false\nan owl,,,\n',
    )

    first = run_cli(
        ["batch", str(jsonl), "-m", SCHNELL, "-o", str(tmp_path / "a"), "-i", "seed=7"],
        clean_fake,
    )
    second = run_cli(
        ["batch", str(csv), "-m", SCHNELL, "-o", str(tmp_path / "b")], clean_fake
    )

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    sent = sorted(
        json.dumps(p["input"], sort_keys=True)
        for p in clean_fake.stats()["predictions"].values()
    )
    assert sent == sorted(
        json.dumps(body, sort_keys=True)
        for body in (
            {"prompt": "a boat", "num_outputs": 2, "seed": 7},
            {"prompt": "an owl", "seed": 7},
            {
                "prompt": "a fox, running",
                "num_outputs": 2,
                "megapixels": "0.25",
                "go_fast": False,
            },
            {"prompt": "an owl"},
        )
    )
    assert results(tmp_path / "a")[0]["id"] == "boat"
    assert len(results(tmp_path / "a")[0]["files"]) == 2


@pytest.mark.parametrize(
    ("name", "content", "extra", "message"),
    [
        ("missing.txt", None, [], "missing.txt: no such file"),
        ("empty.txt", "\n\n", [], "empty.txt: no prompts"),
        (
            "bad.jsonl",
            '{"prompt": "ok"}\n{"prompt": \n',
            [],
            "bad.jsonl:2: not valid JSON",
        ),
        (
            "list.jsonl",
            '{"prompt": "ok"}\n[1, 2]\n',
            [],
            "list.jsonl:2: each line must be a JSON object",
        ),
        (
            "noprompt.csv",
            "text,seed\nhello,1\n",
            [],
            "noprompt.csv:1: the header needs a 'prompt' column",
        ),
        (
            "ragged.csv",
            "prompt,seed\nhello,1\nbye\n",
            [],
            "ragged.csv:3: 1 cells, the header has 2",
        ),
        (
            "params.txt",
            "ok\nfine\n",
            ["-i", "num_outputs=9", "-i", "output_format=gif"],
            "params.txt:1: FluxSchnell: num_outputs=9",
        ),
        (
            "badline.jsonl",
            '{"prompt": "ok"}\n{"prompt": "x", "num_inference_steps": 5}\n',
            [],
            "badline.jsonl:2: FluxSchnell: num_inference_steps=5",
        ),
        ("model.txt", "ok\n", ["--model", "flux-schnell"], "owner/name"),
        ("pair.txt", "ok\n", ["-i", "novalue"], "-i takes key=value"),
    ],
)
def test_bad_input_exits_2_with_file_and_line_and_sends_nothing(
    clean_fake: FakeProcess,
    tmp_path: Path,
    name: str,
    content: str | None,
    extra: list[str],
    message: str,
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    model = [] if "--model" in extra else ["--model", SCHNELL]

    done = run_cli(
        ["batch", str(path), *model, "--out", str(tmp_path / "out"), *extra], clean_fake
    )

    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert clean_fake.stats()["requests"].get("create") is None


def test_missing_key_exits_2(tmp_path: Path) -> None:
    prompts = write(tmp_path / "p.txt", "a boat\n")

    done = run_cli(
        ["batch", str(prompts), "-m", SCHNELL, "-o", str(tmp_path / "o")], None
    )

    assert done.returncode == 2
    assert "COMETAPI_KEY" in done.stderr


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_prompts_added_at_the_end_run_and_a_changed_one_is_refused(
    clean_fake: FakeProcess, tmp_path: Path
) -> None:
    prompts = write(tmp_path / "p.txt", "a boat\n")
    out = tmp_path / "out"
    command = ["batch", str(prompts), "-m", SCHNELL, "-o", str(out)]
    first = run_cli(command, clean_fake)
    prompts.write_text("a boat\nan owl\n")
    added = run_cli(command, clean_fake)
    manifest = (out / "results.jsonl").read_text()

    prompts.write_text("a cat\nan owl\n")
    changed = run_cli(command, clean_fake)
    prompts.write_text("a boat\n")
    removed = run_cli(command, clean_fake)
    prompts.write_text("a boat\nan owl\n")
    other_model = run_cli(
        ["batch", str(prompts), "-m", "black-forest-labs/flux-pro", "-o", str(out)],
        clean_fake,
    )

    assert first.returncode == 0, first.stderr
    assert added.returncode == 0, added.stderr
    assert [line["outcome"] for line in results(out)] == ["succeeded"] * 2
    assert changed.returncode == 2
    assert f"p.txt:1: not the prompt the batch in {out} recorded" in changed.stderr
    assert removed.returncode == 2
    assert "p.txt has 1 prompts, fewer than the batch" in removed.stderr
    assert other_model.returncode == 2
    assert f"runs {SCHNELL}, not black-forest-labs/flux-pro" in other_model.stderr
    assert all(
        "--out folder" in done.stderr for done in (changed, removed, other_model)
    )
    # The boat was not paid for twice, and the refused runs sent nothing and left
    # the manifest alone.
    assert clean_fake.stats()["created"] == 2
    assert (out / "results.jsonl").read_text() == manifest


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_create_in_flight_at_a_crash_is_ambiguous_until_resubmitted(
    clean_fake: FakeProcess, tmp_path: Path
) -> None:
    prompts = write(tmp_path / "p.txt", "a boat\nan owl\n")
    out = tmp_path / "out"
    assert (
        run_cli(
            ["batch", str(prompts), "-m", SCHNELL, "-o", str(out)], clean_fake
        ).returncode
        == 0
    )
    # As a SIGKILL between "pending" and "created" leaves it:
    with closing(sqlite3.connect(out / "journal.sqlite3")) as journal:
        journal.execute(
            "update items set state = 'pending', prediction_id = null where \"index\" = 1"
        )
        journal.commit()

    reported = run_cli(
        ["batch", str(prompts), "-m", SCHNELL, "-o", str(out), "--json"], clean_fake
    )
    resubmitted = run_cli(
        ["batch", str(prompts), "-m", SCHNELL, "-o", str(out), "--resubmit-ambiguous"],
        clean_fake,
    )

    assert reported.returncode == 1
    assert json.loads(reported.stdout)["ambiguous"] == 1
    assert [line["outcome"] for line in results(out)] == ["succeeded", "succeeded"]
    assert resubmitted.returncode == 0, resubmitted.stderr
    assert (
        clean_fake.stats()["created"] == 3
    )  # the resubmission paid again, as documented


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("stop_signal", [signal.SIGKILL, signal.SIGINT])
def test_a_rerun_after_a_kill_finishes_every_input_paying_once(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    count = 40
    prompts = write(
        tmp_path / "p.txt", "".join(f"prompt number {n}\n" for n in range(count))
    )
    out = tmp_path / "out"
    # SIGKILL can land while a create is in flight, which leaves that item ambiguous
    # by design (test above); so that run creates everything at once and is killed
    # while the predictions run. SIGINT stops creating cleanly at any moment.
    concurrency = count if stop_signal == signal.SIGKILL else 8
    command = [
        "batch",
        str(prompts),
        "-m",
        SCHNELL,
        "-o",
        str(out),
        "-c",
        str(concurrency),
    ]

    with fake_process("--latency", "flux-schnell=uniform:0.5:2.0") as server:
        child = start_cli(command, server)
        if stop_signal == signal.SIGKILL:
            wait_for(
                lambda: (
                    journal_states(out).get("created", 0)
                    + journal_states(out).get("succeeded", 0)
                    == count
                )
            )
        wait_for(lambda: journal_states(out).get("succeeded", 0) >= 3)
        child.send_signal(stop_signal)
        _first_stdout, first_stderr = child.communicate(timeout=60)

        rerun = run_cli(command, server)
        stats = server.stats(log=True)

    if stop_signal == signal.SIGINT:
        assert child.returncode == 130, first_stderr
        assert "Resume with" in first_stderr
    else:
        assert child.returncode == -signal.SIGKILL
    assert rerun.returncode == 0, rerun.stderr
    lines = results(out)
    assert [line["index"] for line in lines] == list(range(count))  # one outcome each
    assert all(line["outcome"] == "succeeded" for line in lines)
    assert stats["created"] == count
    assert stats["duplicates"] == 0
    for line in lines:
        assert_complete_png(out / line["files"][0])
    assert not list(out.glob("*.part"))
    file_requests = [r for r in stats["requests_log"] if r["route"] == "file"]
    assert file_requests
    assert all("Authorization" not in r["headers"] for r in file_requests)


@pytest.mark.slow
def test_run_and_get(clean_fake: FakeProcess, tmp_path: Path) -> None:
    ran = run_cli(
        [
            "run",
            SCHNELL,
            "-i",
            "prompt=a boat",
            "-i",
            "num_outputs=2",
            "--out",
            str(tmp_path),
        ],
        clean_fake,
    )
    urls = ran.stdout.split()
    prediction_id = urls[0].split("/")[-2]
    got = run_cli(["get", prediction_id], clean_fake)
    invalid = run_cli(
        ["run", SCHNELL, "-i", "prompt=x", "-i", "num_outputs=5"], clean_fake
    )

    assert ran.returncode == 0, ran.stderr
    assert len(urls) == 2
    assert len(list(tmp_path.glob("*.webp"))) == 2
    assert got.returncode == 0
    assert json.loads(got.stdout)["status"] == "succeeded"
    assert invalid.returncode == 2
    assert "num_outputs=5" in invalid.stderr


@pytest.fixture(scope="module")
def fake_server_command() -> Iterator[FakeProcess]:
    """`comet-replicate fake-server`, as a newcomer starts it."""
    child = start_cli(["fake-server", "--port", "0", "--api-key", API_KEY], None)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.startswith("listening on "), line
        yield FakeProcess(base_url=line.split()[-1], process=child)
    finally:
        child.terminate()
        child.communicate(timeout=10)


def test_run_takes_the_prompt_after_the_model(
    fake_server_command: FakeProcess,
) -> None:
    fake_server_command.reset()

    done = run_cli(["run", SCHNELL, "a cat"], fake_server_command)

    assert done.returncode == 0, done.stderr
    (url,) = done.stdout.split()
    assert url.startswith("http://127.0.0.1:")
    stats = fake_server_command.stats()
    (prediction,) = stats["predictions"].values()
    assert prediction["model"] == SCHNELL
    assert prediction["input"] == {"prompt": "a cat"}
    assert url.split("/")[-2] in stats["predictions"]


def test_run_with_a_prompt_and_other_inputs(
    fake_server_command: FakeProcess,
) -> None:
    fake_server_command.reset()

    done = run_cli(
        ["run", SCHNELL, "a cat", "-i", "num_outputs=2", "-i", "aspect_ratio=16:9"],
        fake_server_command,
    )

    assert done.returncode == 0, done.stderr
    assert len(done.stdout.split()) == 2
    (prediction,) = fake_server_command.stats()["predictions"].values()
    assert prediction["input"] == {
        "prompt": "a cat",
        "num_outputs": 2,
        "aspect_ratio": "16:9",
    }


def test_a_prompt_given_twice_is_a_usage_error(
    fake_server_command: FakeProcess,
) -> None:
    fake_server_command.reset()

    done = run_cli(["run", SCHNELL, "a cat", "-i", "prompt=a dog"], fake_server_command)

    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "error: the prompt is given twice, as PROMPT and as -i prompt=...; give it "
        "once; see 'python -m comet_replicate_async run --help'"
    )
    # Only the test's own reset reached the fake: no create, no query.
    assert set(fake_server_command.stats()["requests"]) == {"control"}


def test_demo_runs_with_no_key_and_no_network(tmp_path: Path) -> None:
    done = run_cli(["demo", "--out", str(tmp_path), "--count", "12", "--json"], None)

    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["total"] == 12
    assert summary["succeeded"] + summary["failed"] == 12
    assert (tmp_path / "index.html").exists()
    assert len(results(tmp_path)) == 12


def test_fake_server_command_serves_until_terminated() -> None:
    child = start_cli(
        ["fake-server", "--port", "0", "--latency", "flux-schnell=0.1"], None
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    child.terminate()
    child.communicate(timeout=10)

    assert line.startswith("listening on http://127.0.0.1:")
    assert child.returncode == 0


def test_without_the_cli_extra_a_message_says_how_to_install_it() -> None:
    code = "import sys; sys.modules['click'] = None; from comet_replicate_async.__main__ import main; sys.exit(main([]))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 2
    assert "pip install 'comet-replicate-async[cli]'" in done.stderr
