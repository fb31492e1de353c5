"""The studio page in a real browser: Debian's Chromium driven by Playwright against a real ``atelier serve``
on 127.0.0.1 (demo models, the tiny Llama, hashing embeddings). Screenshots of every test land in
``.artifacts/studio/`` (or ``$ATELIER_TEST_ARTIFACTS/studio``).

``make test`` installs Chromium where it can (root with apt); elsewhere these tests are skipped, saying why.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from app.entrypoints.library import Atelier
from tests.conftest import register_demo
from tests.e2e.test_server_process import Server

CHROMIUM = os.environ.get("ATELIER_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(os.environ.get("ATELIER_TEST_ARTIFACTS", Path(__file__).parents[2] / ".artifacts")) / "studio"

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (it comes with the dev extra: make setup)"
)
if not Path(CHROMIUM).is_file():
    pytest.skip(
        f"no Chromium at {CHROMIUM}: `make test` installs Debian's chromium package only when run as root with "
        "apt-get; install it (or set ATELIER_TEST_CHROMIUM) to run the browser tests",
        allow_module_level=True,
    )

pytestmark = pytest.mark.slow
FRANCE = "What is the capital of France?"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, demo_models: dict[str, tuple[str, str]]) -> Iterator[str]:
    from app.adapters.transformers.tiny import build_tiny_llama

    root = tmp_path_factory.mktemp("studio")
    data_dir = root / "data"
    with Atelier.open(data_dir=str(data_dir), start_worker=False) as atelier:
        register_demo(atelier, demo_models)
        atelier.add_model("demo-vae", demo_models["demo"][0], kind="vae")  # the demo model's own vae/
    llm = build_tiny_llama(str(root / "tiny-llm"))
    srv = Server(str(data_dir), env={"ATELIER_LLM": llm, "ATELIER_EMBEDDER": "hashing"})
    srv.start()
    yield srv.url
    srv.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser: Any, server: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    context.set_default_timeout(60_000)
    tab = context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda error: problems.append(str(error)))
    tab.goto(server + "/")
    tab.wait_for_selector("body[data-ready=true]")
    yield tab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()
    assert not problems, f"script errors on the page: {problems}"


def _png(color: tuple[int, int, int], size: int = 64) -> bytes:
    image = Image.new("RGB", (size, size), (30, 60, 200))
    image.paste(color, (size // 4, size // 4, 3 * size // 4, 3 * size // 4))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _upload(tmp_path: Path, name: str, color: tuple[int, int, int]) -> str:
    path = tmp_path / name
    path.write_bytes(_png(color))
    return str(path)


def _job_of(card: Any, server: str) -> dict[str, Any]:
    """The job a card on the page shows, as the API has it."""
    job: dict[str, Any] = httpx.get(f"{server}/v1/jobs/{card.get_attribute('data-job-id')}", timeout=10).json()
    return job


def _wait_finished(server: str, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job: dict[str, Any] = httpx.get(f"{server}/v1/jobs/{job_id}", timeout=10).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish")


def test_txt2img_chinese_prompt_shows_the_image(page: Any, server: str) -> None:
    page.fill("#t2i-prompt", "一个红色的圆形在中间")
    page.fill("#t2i-steps", "12")
    page.fill("#t2i-seed", "7")
    page.click("#t2i-generate")
    card = page.locator("#t2i-results .job-card").first
    card.locator("img.result").wait_for()
    assert "100%" in card.locator(".job-status").inner_text()
    assert card.locator("progress").evaluate("p => p.value") == 1
    width = card.locator("img.result").evaluate("img => img.complete && img.naturalWidth")
    assert width == 64  # the demo model's native size, decoded by the browser
    job = _job_of(card, server)
    assert job["status"] == "succeeded" and job["params"]["prompt"] == "一个红色的圆形在中间" and job["seed"] == 7
    # The shipped model draws what was asked: the checker reads the served image back.
    body = {"image": job["images"][0]["id"], "caption": "一个红色的圆形在中间"}
    reading = httpx.post(f"{server}/v1/scenes/read", json=body, timeout=10).json()
    assert reading["integrity"]["score"] >= 0.5, reading
    # "Reuse last seed" brings the seed back after a random one.
    page.click("#t2i-random-seed")
    assert page.input_value("#t2i-seed") == "-1"
    page.click("#t2i-reuse-seed")
    assert page.input_value("#t2i-seed") == "7"


def test_live_progress_and_cancel(page: Any, server: str) -> None:
    page.fill("#t2i-prompt", "一个蓝色的大正方形")
    page.fill("#t2i-width", "384")
    page.fill("#t2i-height", "384")
    page.fill("#t2i-steps", "150")
    page.click("#t2i-generate")
    card = page.locator("#t2i-results .job-card").first
    # Progress arrives from the server-sent events while the job runs.
    bar = "document.querySelector('#t2i-results .job-card progress')"
    page.wait_for_function(f"() => {bar} && {bar}.value > 0 && {bar}.value < 1")
    assert "生成中" in card.locator(".job-status").inner_text()
    card.locator(".job-cancel").click()
    page.wait_for_function(
        "() => document.querySelector('#t2i-results .job-card .job-status').dataset.status === 'cancelled'"
    )
    assert card.locator(".job-cancel").is_hidden()
    job = _job_of(card, server)
    assert job["status"] == "cancelled"


def test_invalid_size_shows_a_readable_error_next_to_the_field(page: Any) -> None:
    page.fill("#t2i-prompt", "一个红色的圆形")
    page.fill("#t2i-width", "100")
    page.click("#t2i-generate")
    field = page.locator("#t2i-form [data-field=width]")
    field.locator(".field-error").wait_for()
    message = field.locator(".field-error").inner_text()
    assert "multiple of 8" in message and "{" not in message
    assert "invalid" in (field.get_attribute("class") or "")
    assert page.locator("#t2i-results .job-card").count() == 0
    # Fixing the field clears the error on the next try.
    page.fill("#t2i-width", "64")
    page.fill("#t2i-steps", "4")
    page.click("#t2i-generate")
    page.locator("#t2i-results .job-card img.result").wait_for()
    assert field.locator(".field-error").inner_text() == ""


def test_img2img_with_an_uploaded_image(page: Any, server: str, tmp_path: Path) -> None:
    page.click("[data-tab=img2img]")
    # A file that is no image is refused next to its field, in words.
    page.set_input_files("#i2i-init-file", {"name": "notes.png", "mimeType": "image/png", "buffer": b"not an image"})
    field = page.locator("#i2i-form [data-field=init_image]")
    field.locator(".field-error").wait_for()
    assert "无法" in field.locator(".field-error").inner_text()
    page.set_input_files("#i2i-init-file", _upload(tmp_path, "init.png", (220, 30, 30)))
    page.locator("#i2i-canvas-wrap").wait_for()
    # Only the image-to-image fields show: no mask tools, outpaint borders or control image.
    assert page.locator(".mask-tools").is_hidden() and page.locator("#i2i-out-left").is_hidden()
    assert page.locator("#i2i-control-file").is_hidden() and page.locator("#i2i-mask").is_hidden()
    page.fill("#i2i-prompt", "一个绿色的圆形在中间")
    page.fill("#i2i-steps", "10")
    page.fill("#i2i-strength", "0.6")
    page.click("#i2i-add-lora")
    page.select_option("#i2i-loras .lora-name", "demo-style-a")
    page.fill("#i2i-loras .lora-weight", "0.5")
    page.click("#i2i-generate")
    card = page.locator("#i2i-results .job-card").first
    card.locator("img.result").wait_for()
    job = _job_of(card, server)
    assert job["params"]["mode"] == "img2img" and job["params"]["init_image"].startswith("upload-")
    assert job["params"]["strength"] == 0.6
    assert job["params"]["loras"] == [{"name": "demo-style-a", "weight": 0.5}]


def test_inpaint_with_a_mask_painted_in_the_page(page: Any, server: str, tmp_path: Path) -> None:
    page.click("[data-tab=img2img]")
    page.select_option("#i2i-mode", "inpaint")
    page.set_input_files("#i2i-init-file", _upload(tmp_path, "init.png", (30, 200, 30)))
    mask = page.locator("#i2i-mask")
    mask.wait_for()
    assert page.locator(".mask-tools").is_visible() and page.locator("#i2i-out-left").is_hidden()
    box = mask.bounding_box()
    page.mouse.move(box["x"] + 40, box["y"] + 40)
    page.mouse.down()
    page.mouse.move(box["x"] + 200, box["y"] + 200, steps=10)
    page.mouse.up()
    page.fill("#i2i-prompt", "一个黄色的星形")
    page.fill("#i2i-steps", "8")
    page.click("#i2i-generate")
    card = page.locator("#i2i-results .job-card").first
    card.locator("img.result").wait_for()
    job = _job_of(card, server)
    assert job["params"]["mode"] == "inpaint" and job["params"]["mask_image"].startswith("upload-")


def test_outpaint_grows_the_canvas(page: Any, server: str, tmp_path: Path) -> None:
    page.click("[data-tab=img2img]")
    page.select_option("#i2i-mode", "outpaint")
    page.set_input_files("#i2i-init-file", _upload(tmp_path, "init.png", (200, 200, 30)))
    page.fill("#i2i-out-right", "32")
    page.fill("#i2i-prompt", "一个黄色的圆形")
    page.fill("#i2i-steps", "6")
    page.click("#i2i-generate")
    card = page.locator("#i2i-results .job-card").first
    card.locator("img.result").wait_for()
    job = _job_of(card, server)
    assert job["params"]["mode"] == "outpaint" and job["params"]["outpaint"]["right"] == 32
    assert job["images"][0]["width"] == 96


def test_controlnet_preview_and_generate(page: Any, server: str, tmp_path: Path) -> None:
    page.click("[data-tab=img2img]")
    page.select_option("#i2i-mode", "controlnet")
    page.set_input_files("#i2i-control-file", _upload(tmp_path, "control.png", (250, 250, 250)))
    page.click("#i2i-preview-control")
    preview = page.locator("#i2i-control-map")
    preview.wait_for()
    page.wait_for_function("() => document.querySelector('#i2i-control-map').naturalWidth > 0")
    assert "canny" in page.inner_text("#i2i-control-caption")
    page.fill("#i2i-prompt", "一个白色的正方形")
    page.fill("#i2i-steps", "6")
    page.select_option("#i2i-model", "demo")
    # the pickers offer the ControlNets made for the model's family and the VAEs of its latent space
    assert page.eval_on_selector_all("#i2i-control-model option", "os => os.map(o => o.value)") == [
        "",
        "canny",
        "depth",
    ]
    assert page.eval_on_selector_all("#i2i-vae option", "os => os.map(o => o.value)") == ["", "demo-vae"]
    page.select_option("#i2i-control-model", "depth")
    page.select_option("#i2i-vae", "demo-vae")
    page.click("#i2i-generate")
    card = page.locator("#i2i-results .job-card").first
    card.locator("img.result").wait_for()
    job = _job_of(card, server)
    assert job["params"]["mode"] == "controlnet" and job["params"]["controls"][0]["kind"] == "canny"
    assert (job["params"]["controls"][0]["model"], job["params"]["vae"]) == ("depth", "demo-vae")


def test_gallery_open_rerun_and_send_to_img2img(page: Any, server: str) -> None:
    job_id = httpx.post(f"{server}/v1/jobs", json={"prompt": "一个紫色的心形", "steps": 6, "seed": 11}, timeout=10)
    _wait_finished(server, job_id.json()["id"])
    page.click("[data-tab=gallery]")
    item = page.locator(".gallery-item", has_text="一个紫色的心形").first
    item.locator("img").wait_for()
    assert "第 1 / " in page.inner_text("#gallery-page")
    item.click()
    detail = page.locator("#gallery-detail")
    detail.wait_for()
    assert '"seed": 11' in detail.locator(".job-params").inner_text()
    assert detail.locator("a[download]").first.get_attribute("href").startswith("/v1/images/")
    detail.locator(".rerun-same").click()
    rerun = detail.locator(".job-card").first
    rerun.locator("img.result").wait_for()
    again = _job_of(rerun, server)
    assert again["seed"] == 11 and again["params"]["prompt"] == "一个紫色的心形"
    detail.locator(".send-i2i").first.click()
    page.locator("#panel-img2img.active").wait_for()
    page.locator("#i2i-canvas-wrap").wait_for()
    assert page.locator("#i2i-canvas").evaluate("c => c.width") == 64


def test_prompt_session_turn_pick_and_undo(page: Any) -> None:
    page.click("[data-tab=chat]")
    page.fill("#chat-prompt", "一个红色的圆形在中间")
    page.click("#chat-start")
    page.locator("#chat-session").wait_for()
    page.fill("#chat-instruction", "把圆形换成蓝色")
    page.fill("#chat-n", "4")
    page.fill("#chat-k", "2")
    page.fill("#chat-steps", "6")
    page.fill("#chat-seed", "3")
    page.click("#chat-send")
    turn = page.locator(".turn[data-turn='1']")
    turn.locator(".candidate img").first.wait_for()
    candidates = turn.locator(".candidate")
    assert candidates.count() >= 1
    assert "总分" in candidates.first.inner_text()
    assert turn.locator(".candidate.chosen").count() == 1
    current = page.inner_text("#chat-current")
    assert current == turn.locator(".candidate.chosen .c-prompt").inner_text()
    # Edit the chosen prompt by hand and use it.
    turn.locator(".edit-prompt").fill("一个蓝色的圆形在左边")
    turn.locator(".use-edited").click()
    page.wait_for_function("() => document.querySelector('#chat-current').textContent === '一个蓝色的圆形在左边'")
    page.click("#chat-undo")
    page.wait_for_function("() => document.querySelector('#chat-current').textContent === '一个红色的圆形在中间'")
    # Rewriting off: the current prompt is rendered as it is, the only candidate.
    page.uncheck("#chat-rewrite")
    page.fill("#chat-instruction", "就画这个")
    page.click("#chat-send")
    second = page.locator(".turn[data-turn='2']")
    second.locator(".candidate img").wait_for()
    assert second.locator(".candidate").count() == 1
    assert second.locator(".c-prompt").inner_text() == "一个红色的圆形在中间"
    # Branch from turn 1: the next turn grows from the prompt chosen there.
    page.select_option("#chat-branch-from", "1")
    page.click("#chat-branch")
    page.wait_for_function("() => document.querySelector('#chat-current').textContent === '一个蓝色的圆形在左边'")


def test_knowledge_question_with_an_ingested_document(page: Any, tmp_path: Path) -> None:
    page.click("[data-tab=knowledge]")
    notes = tmp_path / "glass.txt"
    notes.write_text("Lumen glass is blown in the old quarter by the river.", encoding="utf-8")
    page.set_input_files("#kn-files", str(notes))
    page.fill("#kn-doc-name", "atelier-notes.md")
    page.fill("#kn-doc-text", "The Atelier river flows through the town of Lumen. Lumen is famous for glass.")
    page.click("#kn-ingest")
    page.wait_for_function("() => document.querySelector('#kn-ingest-status').textContent.length > 0")
    assert "2 篇文档" in page.inner_text("#kn-ingest-status")
    page.fill("#kn-question", "Which river flows through Lumen?")
    page.select_option("#kn-retrieval", "always")
    page.click("#kn-ask")
    page.locator("#kn-answer").wait_for()
    assert page.locator("#kn-decision").get_attribute("data-decision") == "retrieved"
    assert "atelier-notes.md" in page.inner_text("#kn-passages")
    assert "total" in page.inner_text("#kn-timings")
    # An empty question is refused next to the field.
    page.fill("#kn-question", "  ")
    page.click("#kn-ask")
    page.locator("#kn-form [data-field=question].invalid").wait_for()


def test_edit_compare_and_rollback(page: Any) -> None:
    page.click("[data-tab=edits]")
    page.fill("#ed-prompt", FRANCE)
    page.fill("#ed-target", "Rome")
    page.select_option("#ed-editor", "grace")
    page.click("#ed-apply")
    page.locator("#ed-after").wait_for()
    assert page.inner_text("#ed-after") == "Rome"
    assert page.inner_text("#ed-before") != "Rome"
    row = page.locator("#ed-log tbody tr").first
    assert "Rome" in row.inner_text() and row.get_attribute("data-status") == "applied"
    page.click("#ed-rollback-all")
    page.wait_for_function("() => document.querySelector('#ed-log tbody tr').dataset.status === 'rolled_back'")
    page.fill("#ed-ask-prompt", FRANCE)
    page.click("#ed-ask")
    page.wait_for_function("() => document.querySelector('#ed-ask-answer').textContent.length > 0")
    assert page.inner_text("#ed-ask-answer") != "Rome"


def test_llm_chat_streams_a_reply_and_switches_variant(page: Any) -> None:
    console_errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and console_errors.append(message.text))
    page.click("[data-tab=llm]")
    page.wait_for_function("() => document.querySelectorAll('#llm-model option').length > 1")
    options = page.eval_on_selector_all("#llm-model option", "os => os.map(o => [o.value, o.textContent])")
    labels = dict(options)
    assert "当前模型" in labels["tiny-llm"] and "原始模型" in labels["tiny-llm@base"], options
    assert page.input_value("#llm-model") == "tiny-llm"  # the default model is chosen
    page.fill("#llm-max-tokens", "8")
    page.fill("#llm-temperature", "0")
    replies = page.locator("#llm-log .msg.assistant")
    done = "n => document.querySelectorAll('#llm-log .msg.assistant:not(.streaming)').length === n"
    done += " && !document.querySelector('#llm-send').disabled"

    def send(text: str, answers: int) -> dict[str, Any]:
        page.fill("#llm-input", text)
        with page.expect_request("**/v1/chat/completions") as sent:
            page.press("#llm-input", "Enter")  # Enter sends
        page.wait_for_function(done, arg=answers)
        body: dict[str, Any] = sent.value.post_data_json
        return body

    first = send("你好", 1)
    assert first["stream"] is True and first["max_tokens"] == 8 and first["model"] == "tiny-llm"
    assert first["messages"] == [{"role": "user", "content": "你好"}]
    assert replies.first.evaluate("b => b.querySelector('.msg-text').textContent.length") > 0
    assert page.locator("#llm-stop").is_hidden()
    # A new conversation forgets the history.
    page.click("#llm-new")
    assert replies.count() == 0 and page.locator("#llm-log").is_hidden()
    send("你好", 1)
    page.select_option("#llm-model", "tiny-llm@base")
    second = send("Tell me more", 2)
    assert second["model"] == "tiny-llm@base" and [m["role"] for m in second["messages"]] == [
        "user",
        "assistant",
        "user",
    ]
    assert replies.count() == 2 and page.locator("#llm-log .msg.user").count() == 2
    assert replies.nth(1).get_attribute("data-model") == "tiny-llm@base"
    assert all(len(text) > 0 for text in replies.evaluate_all("bs => bs.map(b => b.textContent)"))
    # A refused knowledge question (too long for the knowledge flow): the server's reason, readable, and the
    # message kept to send again.
    page.select_option("#llm-model", "tiny-llm+knowledge")
    too_long = FRANCE + " " + "x" * 2000
    page.fill("#llm-input", too_long)
    page.click("#llm-send")
    page.wait_for_function("() => document.querySelector('#llm-form .form-error').textContent.length > 0")
    assert "at most 2000" in page.inner_text("#llm-form .form-error")
    assert replies.count() == 2 and page.input_value("#llm-input") == too_long
    unexpected = [e for e in console_errors if "status of 400" not in e]
    assert not unexpected, unexpected


def test_english_switch_persists(page: Any) -> None:
    assert page.inner_text("[data-tab=txt2img]") == "文生图"
    page.click("#lang-switch")
    assert page.inner_text("[data-tab=txt2img]") == "Text to image"
    assert page.inner_text("#t2i-generate") == "Generate"
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    assert page.inner_text("[data-tab=knowledge]") == "Knowledge"
    page.click("#lang-switch")
    assert page.inner_text("[data-tab=knowledge]") == "知识问答"


def test_training_an_image_lora_from_a_zip_and_using_it(page: Any, server: str, tmp_path: Path) -> None:
    from app.domain.image_dataset import pack_image_archive
    from app.lab.demo_world import concepts

    files = concepts.scene_files(concepts.training_scenes(4, 0), 0)
    scenes = tmp_path / "scenes.zip"
    scenes.write_bytes(pack_image_archive(files))
    bare = tmp_path / "bare.zip"
    bare.write_bytes(pack_image_archive({k: v for k, v in files.items() if k.endswith(".png")}))
    page.fill("#t2i-prompt", "一个粉色的方形")
    page.click("[data-tab=training]")
    page.locator("#panel-training.active").wait_for()
    # Images without captions and no trigger word: the server's reason, next to the file.
    page.set_input_files("#tr-file", str(bare))
    assert page.input_value("#tr-epochs") == "" and page.get_attribute("#tr-epochs", "placeholder") == "10"
    page.wait_for_function("() => [...document.querySelectorAll('#tr-base option')].some(o => o.value === 'demo-tiny')")
    page.select_option("#tr-base", "demo-tiny")
    page.fill("#tr-name", "pinky")
    page.fill("#tr-epochs", "2")
    page.fill("#tr-batch", "2")
    page.fill("#tr-rank", "2")
    page.click("#tr-start")
    field = page.locator("#tr-form [data-field=training_file]")
    field.locator(".field-error").wait_for()
    assert "caption" in field.locator(".field-error").inner_text()
    assert "invalid" in (field.get_attribute("class") or "")
    assert page.locator("#tr-job").is_hidden()
    # With captions: it trains, the loss is plotted step by step, and the samples show.
    page.set_input_files("#tr-file", str(scenes))
    page.fill("#tr-sample-prompt", "一个粉色的圆形")
    page.fill("#tr-sample-steps", "2")
    page.fill("#tr-checkpoint-every", "2")
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/v1/trainings")) as sent:
        page.click("#tr-start")
    body: dict[str, Any] = sent.value.post_data_json
    assert body["kind"] == "image-lora" and body["training_file"].startswith("file-")
    assert (body["base_model"], body["name"], body["epochs"], body["batch_size"], body["lora_rank"]) == (
        "demo-tiny",
        "pinky",
        2,
        2,
        2,
    )
    assert body["sample_prompts"] == ["一个粉色的圆形"] and "trigger_word" not in body
    assert field.locator(".field-error").inner_text() == ""
    page.wait_for_function("() => document.querySelector('#tr-job').dataset.status === 'succeeded'", timeout=180_000)
    job = httpx.get(f"{server}/v1/trainings/{page.get_attribute('#tr-job', 'data-training-id')}", timeout=10).json()
    assert job["status"] == "succeeded" and job["result_model"] == "pinky" and job["total_steps"] == 4
    assert "已完成" in page.inner_text("#tr-status") and page.locator("#tr-cancel").is_hidden()
    line = page.locator("#tr-plot polyline.loss-line")
    assert line.get_attribute("data-count") == "4" and len(line.get_attribute("points").split()) == 4
    assert page.locator("#tr-plot text", has_text="步数").count() == 1
    assert page.locator("#tr-plot text", has_text="损失").count() >= 1
    page.wait_for_function("() => [...document.querySelectorAll('#tr-samples img')].some(i => i.naturalWidth > 0)")
    assert page.eval_on_selector_all("#tr-samples figcaption", "cs => cs.map(c => c.textContent)")[-1] == "第 4 步"
    assert page.locator("#tr-list tr[data-status=succeeded]", has_text="pinky").count() == 1
    # Use it: the text-to-image prompt gets the LoRA tag, its base model chosen.
    page.click("#tr-use")
    page.locator("#panel-txt2img.active").wait_for()
    assert page.input_value("#t2i-prompt") == "一个粉色的方形 <lora:pinky:0.8>"
    assert page.input_value("#t2i-model") == "demo-tiny"
