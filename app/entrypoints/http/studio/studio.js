/* Atelier studio: a page over the public HTTP API (the same endpoints any client uses).
   No build step and no third-party code: it ships with the package and works offline. */
"use strict";

/* ---------- texts: Chinese first, English on the switch ---------- */
const TEXTS = {
  zh: {
    title: "工作室", docs: "接口文档", apiKey: "API 密钥（可选）",
    "tab.txt2img": "文生图", "tab.img2img": "图生图", "tab.gallery": "历史", "tab.chat": "对话改写",
    "tab.knowledge": "知识问答", "tab.llm": "对话", "tab.edits": "模型编辑", "tab.training": "训练",
    generate: "生成", prompt: "提示词", promptHint: "例如：一个红色的圆形在中间", negative: "反向提示词",
    model: "模型", width: "宽度", height: "高度", steps: "步数", guidance: "引导系数", scheduler: "采样器",
    seed: "种子", reuseSeed: "重用上次种子", randomSeed: "随机", numImages: "数量", loras: "LoRA",
    addLora: "添加 LoRA", remove: "移除", weight: "权重", default: "默认", native: "默认", serverDefault: "服务器默认",
    "i2i.mode": "模式", "mode.img2img": "图生图", "mode.inpaint": "局部重绘", "mode.outpaint": "扩图",
    "mode.controlnet": "ControlNet", "mode.txt2img": "文生图", "mode.instruct": "指令编辑",
    noTxt2img: "该模型不能文生图（{modes}）", noNegative: "该模型不支持反向提示词",
    "i2i.init": "输入图像", "i2i.strength": "重绘幅度", "i2i.resize": "缩放方式",
    "resize.stretch": "拉伸", "resize.crop": "裁剪", "resize.pad": "填充",
    "i2i.maskHint": "在图像上涂抹需要重绘的区域", "i2i.brush": "画笔大小", "i2i.clearMask": "清除蒙版",
    "out.left": "向左扩展", "out.right": "向右扩展", "out.up": "向上扩展", "out.down": "向下扩展", "out.fill": "边缘填充",
    "fill.copy": "复制边缘", "fill.reflect": "镜像",
    "cn.image": "控制图像", "cn.kind": "预处理", "cn.canny": "边缘 (canny)", "cn.depth": "深度 (depth)",
    "cn.none": "无（已是控制图）", "cn.scale": "控制强度", "cn.preview": "预览控制图", "cn.needImage": "请先选择控制图像或输入图像。",
    "cn.model": "ControlNet 模型", "cn.byKind": "按预处理命名", vae: "VAE", modelOwn: "模型自带",
    "cn.previewOf": "{kind} 预处理结果，{w}×{h}",
    refresh: "刷新", prev: "上一页", next: "下一页", page: "第 {page} / {pages} 页，共 {total} 个任务",
    cancel: "取消", download: "下载 PNG", rerunSame: "同种子重新生成", rerunNew: "新种子重新生成",
    sendI2i: "发送到图生图", params: "参数", close: "关闭", seedOf: "种子 {seed}",
    "status.queued": "排队中", "status.running": "生成中", "status.succeeded": "已完成", "status.failed": "失败",
    "status.cancelled": "已取消", "status.submitting": "提交中…", cancelling: "正在取消…",
    "chat.anchor": "初始提示词", "chat.anchorHint": "例如：一个红色的圆形在中间", "chat.start": "开始会话",
    "chat.current": "当前提示词", "chat.undo": "撤销", "chat.branchFrom": "从此轮分支", "chat.branch": "分支",
    "chat.origin": "原始提示词", "chat.instruction": "修改指令", "chat.instructionHint": "例如：把圆形换成蓝色",
    "chat.rewrite": "改写提示词", "chat.n": "采样数", "chat.k": "渲染数", "chat.send": "发送",
    "chat.strategy": "方式", "chat.strategy.rewrite": "改写提示词", "chat.strategy.edit": "编辑当前图像",
    "chat.strategy.both": "两者一起排序", "chat.editModel": "编辑模型",
    "chat.turn": "第 {n} 轮", "chat.from": "（接在第 {p} 轮之后）", "chat.fromOrigin": "（接在原始提示词之后）",
    "chat.choose": "选这个", "chat.chosen": "已选", "chat.editHint": "编辑提示词后使用", "chat.useEdited": "使用编辑后的提示词",
    "chat.busy": "正在改写并渲染候选…", "chat.score": "总分", "chat.drift": "偏离", "chat.drifted": "偏离原意",
    "chat.source.rewriter": "改写", "chat.source.current": "原提示词", "chat.source.user": "手写",
    "kn.question": "问题", "kn.questionHint": "例如：法国的首都是哪里？", "kn.retrieval": "检索",
    "kn.auto": "自动（仅长尾知识检索）", "kn.always": "总是检索", "kn.never": "从不检索", "kn.topk": "段落数",
    "kn.ask": "提问", "kn.busy": "正在回答…", "kn.docs": "导入文档", "kn.files": "文件（.txt / .md）",
    "kn.docName": "或粘贴文本：名称", "kn.docText": "文本", "kn.ingest": "导入",
    "kn.ingested": "已导入 {docs} 篇文档，{chunks} 个段落", "kn.parametric": "由模型直接回答",
    "kn.retrieved": "检索后回答", "kn.ownAnswer": "模型自己的回答", "kn.signals": "判定依据",
    "kn.sources": "来源", "kn.timings": "耗时（秒）", "kn.noSources": "未检索",
    "sig.alpha": "词频 α", "sig.mean_token_prob": "平均词元概率", "sig.min_token_prob": "最小词元概率",
    "sig.grad_alignment": "梯度对齐", "sig.neighbour_gece": "近邻 GECE", "sig.gece_estimate": "长尾估计",
    "sig.threshold": "阈值", "sig.early_estimate": "早期估计", "sig.aborted_at": "中止位置（词元）",
    "ed.prompt": "问题（提示）", "ed.target": "新答案", "ed.subject": "主体（可选）", "ed.editor": "编辑器",
    "ed.apply": "应用编辑", "ed.busy": "正在编辑模型…", "ed.ask": "向当前模型提问", "ed.log": "编辑记录",
    "ed.rollbackAll": "回滚到原始模型", "ed.rollbackTo": "回滚到此处", "ed.status": "状态", "ed.scores": "得分",
    "ed.before": "编辑前的回答", "ed.after": "编辑后的回答", "ed.targetWas": "目标答案", "ed.applied": "已生效",
    "ed.rolled_back": "已回滚", "ed.rolledBack": "已回滚到第 {to} 个编辑之后（{n} 个编辑被撤销）",
    "ed.noAnswer": "（无法提问：{msg}）",
    "llm.maxTokens": "最大词元数", "llm.temperature": "温度", "llm.new": "新对话", "llm.system": "系统提示词（可选）",
    "llm.systemHint": "例如：你是一位简洁的助手", "llm.message": "消息", "llm.messageHint": "输入消息：Enter 发送，Shift+Enter 换行",
    "llm.send": "发送", "llm.stop": "停止", "llm.empty": "请先输入消息。", "llm.none": "服务器没有可用的语言模型",
    "llm.stopped": "（已停止）", "llm.broken": "（回答中断）",
    "llm.kind.default": "当前模型（含编辑）", "llm.kind.base": "原始模型（无编辑）", "llm.kind.lora": "加 LoRA 适配器",
    "llm.kind.knowledge": "知识检索", "llm.kind.variant": "{parent} 的变体", "llm.kind.other": "其他语言模型",
    "llm.parametric": "模型自答", "llm.retrieved": "检索回答",
    "tr.file": "训练数据（图像 .zip / 对话 .jsonl）", "tr.base": "基础模型", "tr.name": "名称", "tr.nameHint": "例如：my-style",
    "tr.kind": "类型", "tr.kindImage": "图像 LoRA", "tr.kindLlm": "语言模型微调",
    "tr.fileHintImage": "图像 .zip：每张图像旁放一个同名 .txt 说明文字，或附一个 metadata.jsonl；只能训练 SD 系列模型的 LoRA。",
    "tr.fileHintLlm": "对话 .jsonl：每行一条对话记录（messages 列表，每条都有助手的回答）。",
    "tr.badFile": "请选择 .zip（图像）或 .jsonl（对话记录）文件。", "tr.needFile": "请先选择训练数据文件。",
    "tr.needName": "请给训练结果起个名字。", "tr.needBase": "请选择基础模型。", "tr.noBase": "没有可训练的基础模型",
    "tr.epochs": "轮数", "tr.lr": "学习率", "tr.batch": "批大小", "tr.rank": "LoRA 秩",
    "tr.trigger": "触发词（可选）", "tr.triggerHint": "没有说明文字的图像用它作说明",
    "tr.samplePrompt": "样图提示词（可选）", "tr.samplePromptHint": "每个检查点用它画一张样图",
    "tr.sampleSteps": "样图步数", "tr.checkpointEvery": "检查点间隔（步）",
    "tr.start": "开始训练", "tr.starting": "上传并提交中…", "tr.running": "训练中",
    "tr.steps": "第 {step} / {total} 步", "tr.loss": "损失 {loss}", "tr.axisStep": "步数", "tr.axisLoss": "损失",
    "tr.trainLoss": "训练损失", "tr.validLoss": "验证损失", "tr.noLoss": "还没有损失数据", "tr.stepOf": "第 {step} 步",
    "tr.useImage": "在文生图中使用", "tr.useLlm": "在对话中使用", "tr.jobs": "训练记录", "tr.progress": "进度",
    "tr.created": "创建时间", "tr.open": "查看", "tr.none": "还没有训练任务",
    "err.network": "无法连接服务器，请检查服务是否在运行。", "err.auth": "需要 API 密钥：请在右上角填写。",
    "err.unexpected": "出现意外错误：{msg}", "err.notImage": "无法把这个文件读成图像。",
  },
  en: {
    title: "Studio", docs: "API docs", apiKey: "API key (optional)",
    "tab.txt2img": "Text to image", "tab.img2img": "Image to image", "tab.gallery": "History",
    "tab.chat": "Prompt chat", "tab.knowledge": "Knowledge", "tab.llm": "Chat", "tab.edits": "Model edits",
    "tab.training": "Training",
    generate: "Generate", prompt: "Prompt", promptHint: "e.g. 一个红色的圆形在中间 (a red circle in the middle)",
    negative: "Negative prompt", model: "Model", width: "Width", height: "Height", steps: "Steps",
    guidance: "Guidance", scheduler: "Sampler", seed: "Seed", reuseSeed: "Reuse last seed", randomSeed: "Random",
    numImages: "Images", loras: "LoRA", addLora: "Add LoRA", remove: "Remove", weight: "Weight", default: "Default",
    native: "default", serverDefault: "Server default",
    "i2i.mode": "Mode", "mode.img2img": "Image to image", "mode.inpaint": "Inpaint", "mode.outpaint": "Outpaint",
    "mode.controlnet": "ControlNet", "mode.txt2img": "Text to image", "mode.instruct": "Instruction edit",
    noTxt2img: "This model cannot generate from text ({modes})", noNegative: "This model takes no negative prompt",
    "i2i.init": "Input image", "i2i.strength": "Denoising strength", "i2i.resize": "Resize mode",
    "resize.stretch": "Stretch", "resize.crop": "Crop", "resize.pad": "Pad",
    "i2i.maskHint": "Paint over the area to repaint", "i2i.brush": "Brush size", "i2i.clearMask": "Clear mask",
    "out.left": "Expand left", "out.right": "Expand right", "out.up": "Expand up", "out.down": "Expand down",
    "out.fill": "Border fill", "fill.copy": "Copy edge", "fill.reflect": "Reflect",
    "cn.image": "Control image", "cn.kind": "Preprocessor", "cn.canny": "Edges (canny)", "cn.depth": "Depth",
    "cn.none": "None (already a map)", "cn.scale": "Control scale", "cn.preview": "Preview control map",
    "cn.model": "ControlNet model", "cn.byKind": "Named like the preprocessor", vae: "VAE", modelOwn: "The model's own",
    "cn.needImage": "Choose a control image or an input image first.", "cn.previewOf": "{kind} map, {w}×{h}",
    refresh: "Refresh", prev: "Previous", next: "Next", page: "Page {page} of {pages}, {total} jobs",
    cancel: "Cancel", download: "Download PNG", rerunSame: "Re-run, same seed", rerunNew: "Re-run, new seed",
    sendI2i: "Send to image to image", params: "Parameters", close: "Close", seedOf: "seed {seed}",
    "status.queued": "Queued", "status.running": "Running", "status.succeeded": "Done", "status.failed": "Failed",
    "status.cancelled": "Cancelled", "status.submitting": "Submitting…", cancelling: "Cancelling…",
    "chat.anchor": "Starting prompt", "chat.anchorHint": "e.g. 一个红色的圆形在中间", "chat.start": "Start session",
    "chat.current": "Current prompt", "chat.undo": "Undo", "chat.branchFrom": "Branch from", "chat.branch": "Branch",
    "chat.origin": "Original prompt", "chat.instruction": "Instruction", "chat.instructionHint": "e.g. 把圆形换成蓝色",
    "chat.rewrite": "Rewrite the prompt", "chat.n": "Samples", "chat.k": "Rendered", "chat.send": "Send",
    "chat.strategy": "Strategy", "chat.strategy.rewrite": "Rewrite the prompt", "chat.strategy.edit": "Edit the image",
    "chat.strategy.both": "Both, ranked together", "chat.editModel": "Edit model",
    "chat.turn": "Turn {n}", "chat.from": " (after turn {p})", "chat.fromOrigin": " (after the original prompt)",
    "chat.choose": "Pick", "chat.chosen": "Chosen", "chat.editHint": "Edit the prompt, then use it",
    "chat.useEdited": "Use edited prompt", "chat.busy": "Rewriting and rendering candidates…", "chat.score": "score",
    "chat.drift": "drift", "chat.drifted": "drifted from the intent",
    "chat.source.rewriter": "rewrite", "chat.source.current": "unchanged", "chat.source.user": "by hand",
    "kn.question": "Question", "kn.questionHint": "e.g. What is the capital of France?", "kn.retrieval": "Retrieval",
    "kn.auto": "Auto (long-tail only)", "kn.always": "Always", "kn.never": "Never", "kn.topk": "Passages",
    "kn.ask": "Ask", "kn.busy": "Answering…", "kn.docs": "Ingest documents", "kn.files": "Files (.txt / .md)",
    "kn.docName": "Or paste text: name", "kn.docText": "Text", "kn.ingest": "Ingest",
    "kn.ingested": "Ingested {docs} documents, {chunks} chunks", "kn.parametric": "Answered by the model",
    "kn.retrieved": "Answered with retrieval", "kn.ownAnswer": "The model's own answer", "kn.signals": "Signals",
    "kn.sources": "Sources", "kn.timings": "Timings (s)", "kn.noSources": "Nothing retrieved",
    "sig.alpha": "word frequency α", "sig.mean_token_prob": "mean token prob", "sig.min_token_prob": "min token prob",
    "sig.grad_alignment": "gradient alignment", "sig.neighbour_gece": "neighbour GECE",
    "sig.gece_estimate": "long-tail estimate", "sig.threshold": "threshold", "sig.early_estimate": "early estimate",
    "sig.aborted_at": "abandoned after token",
    "ed.prompt": "Prompt", "ed.target": "New answer", "ed.subject": "Subject (optional)", "ed.editor": "Editor",
    "ed.apply": "Apply edit", "ed.busy": "Editing the model…", "ed.ask": "Ask the current model", "ed.log": "Edit log",
    "ed.rollbackAll": "Roll back to the original", "ed.rollbackTo": "Roll back to here", "ed.status": "Status",
    "ed.scores": "Scores", "ed.before": "Answer before", "ed.after": "Answer after", "ed.targetWas": "Target",
    "ed.applied": "active", "ed.rolled_back": "rolled back",
    "ed.rolledBack": "Rolled back to after edit {to} ({n} edits undone)", "ed.noAnswer": "(could not ask: {msg})",
    "llm.maxTokens": "Max tokens", "llm.temperature": "Temperature", "llm.new": "New conversation",
    "llm.system": "System prompt (optional)", "llm.systemHint": "e.g. You are a concise assistant", "llm.message": "Message",
    "llm.messageHint": "Type a message: Enter sends, Shift+Enter starts a new line",
    "llm.send": "Send", "llm.stop": "Stop", "llm.empty": "Type a message first.", "llm.none": "The server has no language model",
    "llm.stopped": "(stopped)", "llm.broken": "(answer cut short)",
    "llm.kind.default": "as edited now", "llm.kind.base": "original, edits off", "llm.kind.lora": "with LoRA adapter",
    "llm.kind.knowledge": "through the knowledge flow", "llm.kind.variant": "a variant of {parent}",
    "llm.kind.other": "another language model",
    "llm.parametric": "answered by the model", "llm.retrieved": "answered with retrieval",
    "tr.file": "Training data (images .zip / chats .jsonl)", "tr.base": "Base model", "tr.name": "Name",
    "tr.nameHint": "e.g. my-style", "tr.kind": "Kind", "tr.kindImage": "Image LoRA", "tr.kindLlm": "Language model fine-tune",
    "tr.fileHintImage": "Images .zip: a .txt caption beside each image, or a metadata.jsonl; LoRAs train on SD-family models only.",
    "tr.fileHintLlm": "Chats .jsonl: one chat record per line (a messages list, each with an assistant answer).",
    "tr.badFile": "Choose a .zip (images) or a .jsonl (chat records) file.", "tr.needFile": "Choose a training data file first.",
    "tr.needName": "Give the result a name.", "tr.needBase": "Choose a base model.", "tr.noBase": "No trainable base model",
    "tr.epochs": "Epochs", "tr.lr": "Learning rate", "tr.batch": "Batch size", "tr.rank": "LoRA rank",
    "tr.trigger": "Trigger word (optional)", "tr.triggerHint": "The caption of images that have none",
    "tr.samplePrompt": "Sample prompt (optional)", "tr.samplePromptHint": "Drawn at every checkpoint",
    "tr.sampleSteps": "Sample steps", "tr.checkpointEvery": "Checkpoint every (steps)",
    "tr.start": "Start training", "tr.starting": "Uploading and submitting…", "tr.running": "Training",
    "tr.steps": "step {step} / {total}", "tr.loss": "loss {loss}", "tr.axisStep": "step", "tr.axisLoss": "loss",
    "tr.trainLoss": "training loss", "tr.validLoss": "validation loss", "tr.noLoss": "No loss yet", "tr.stepOf": "step {step}",
    "tr.useImage": "Use in text to image", "tr.useLlm": "Use in chat", "tr.jobs": "Training jobs", "tr.progress": "Progress",
    "tr.created": "Created", "tr.open": "Open", "tr.none": "No training jobs yet",
    "err.network": "Cannot reach the server; is it running?", "err.auth": "An API key is required: enter it at the top right.",
    "err.unexpected": "Unexpected error: {msg}", "err.notImage": "This file cannot be read as an image.",
  },
};

let lang = localStorage.getItem("atelier.lang") || "zh";
function t(key, vars) {
  let text = (TEXTS[lang] && TEXTS[lang][key]) || TEXTS.zh[key] || key;
  for (const [k, v] of Object.entries(vars || {})) text = text.replaceAll(`{${k}}`, String(v));
  return text;
}
function applyTexts(root) {
  (root || document).querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  (root || document).querySelectorAll("[data-i18n-placeholder]").forEach((el) => {
    el.placeholder = t(el.dataset.i18nPlaceholder);
  });
}
function setLang(next) {
  lang = next;
  localStorage.setItem("atelier.lang", lang);
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.getElementById("lang-switch").textContent = lang === "zh" ? "English" : "中文";
  document.title = `Atelier ${t("title")}`;
  applyTexts();
  rerenderAll();
}

/* ---------- small DOM helpers ---------- */
const $ = (sel, root) => (root || document).querySelector(sel);
const $$ = (sel, root) => [...(root || document).querySelectorAll(sel)];
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}
const num = (input) => (input.value.trim() === "" ? undefined : Number(input.value));
const fmt = (x, digits = 3) => (x === null || x === undefined ? "—" : Number(x).toFixed(digits));

/* ---------- the API ---------- */
class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status; this.code = code; this.field = field || null;
  }
}
function authHeaders() {
  const key = localStorage.getItem("atelier.apiKey");
  return key ? { Authorization: `Bearer ${key}` } : {};
}
async function request(method, path, body, signal) {
  const headers = authHeaders();
  let payload;
  if (body instanceof FormData) payload = body;
  else if (body !== undefined) { headers["Content-Type"] = "application/json"; payload = JSON.stringify(body); }
  let res;
  try {
    res = await fetch(path, { method, headers, body: payload, signal });
  } catch (e) {
    if (e.name === "AbortError") throw e;  // stopped on purpose
    throw new ApiError(0, "network", t("err.network"));
  }
  if (!res.ok) {
    let code = "http_error", message = `HTTP ${res.status}`, field = null;
    try {
      const data = await res.json();
      if (data && data.error) {
        ({ code = code, message = message } = data.error);
        field = data.error.field ?? data.error.param ?? null;  // the native API names the field, OpenAI's shape the param
      }
    } catch (e) { /* not JSON: keep the status line */ }
    if (res.status === 401) { showBanner(t("err.auth")); $("#api-key").focus(); }
    throw new ApiError(res.status, code, message, field);
  }
  return res;
}
/* Seeds are 63-bit integers, beyond what a JavaScript number holds exactly: they are kept as strings. */
function parseJson(text) {
  return JSON.parse(text.replace(/"seed":\s*(\d{16,})/g, '"seed":"$1"'));
}
async function json(res) {
  return parseJson(await res.text());
}
function seedOf(input) {
  const value = input.value.trim();
  if (value === "" || value === "-1") return undefined;
  return /^\d+$/.test(value) && !Number.isSafeInteger(Number(value)) ? value : Number(value);
}
const api = {
  get: async (path) => json(await request("GET", path)),
  post: async (path, body) => json(await request("POST", path, body === undefined ? {} : body)),
  blob: async (method, path, body) => (await request(method, path, body)).blob(),
};
async function upload(blob, name) {
  const form = new FormData();
  form.append("file", blob, name || "image.png");
  return json(await request("POST", "/v1/uploads", form));
}
/* Images need the API key when the server has keys, so they are fetched, not linked, in that case. */
function showImage(img, url) {
  if (!localStorage.getItem("atelier.apiKey")) { img.src = url; return; }
  api.blob("GET", url).then((blob) => { img.src = URL.createObjectURL(blob); }).catch(() => { img.alt = url; });
}

/* ---------- errors next to the field at fault ---------- */
function showBanner(message) {
  const banner = $("#banner");
  banner.textContent = message;
  banner.hidden = !message;
}
function clearErrors(form) {
  $$(".field.invalid", form).forEach((f) => f.classList.remove("invalid"));
  $$(".field-error", form).forEach((e) => { e.textContent = ""; });
  const top = $(".form-error", form);
  if (top) top.textContent = "";
}
function showError(form, error) {
  const message = error instanceof ApiError ? error.message : t("err.unexpected", { msg: error.message || error });
  const field = error.field ? String(error.field).split(".")[0] : null;
  const target = field ? $(`[data-field="${field}"]`, form) : null;
  const span = target ? $(".field-error", target) : null;
  if (span) {
    target.classList.add("invalid");
    span.textContent = message;
    const input = $("input, select, textarea", target);
    if (input && target.offsetParent !== null) input.focus();
    return;
  }
  $(".form-error", form).textContent = message;
}
/* Run an action for a form: errors land next to their field; the submit button is disabled meanwhile. */
async function guarded(form, action, button) {
  clearErrors(form);
  showBanner("");
  const label = button ? button.textContent : "";
  if (button) {
    button.disabled = true;
    if (button.dataset.busy) button.textContent = t(button.dataset.busy);
  }
  try {
    return await action();
  } catch (error) {
    showError(form, error);
    if (!(error instanceof ApiError)) console.error(error);
    return undefined;
  } finally {
    if (button) {
      button.disabled = false;
      if (button.dataset.busy) button.textContent = label;
    }
  }
}

/* ---------- shared catalogue: models, LoRAs, samplers ---------- */
const catalog = { base: [], lora: [], controlnet: [], vae: [], llm: [], samplers: [] };
async function loadCatalog() {
  try {
    const [listed, samplers] = await Promise.all([api.get("/v1/models"), api.get("/sdapi/v1/samplers")]);
    const models = listed.data;
    catalog.base = models.filter((m) => m.kind === "base");
    catalog.lora = models.filter((m) => m.kind === "lora");
    catalog.controlnet = models.filter((m) => m.kind === "controlnet");
    catalog.vae = models.filter((m) => m.kind === "vae");
    catalog.llm = models.filter((m) => m.kind === "llm" || m.kind === "llm-lora");  // language models and their variants
    catalog.samplers = samplers.map((s) => s.name);
  } catch (error) {
    showBanner(error.message);
  }
  fillCatalogSelects();
}
function fillCatalogSelects() {
  $$(".model-select").forEach((select) => {
    const value = select.value;
    select.replaceChildren(el("option", { value: "", text: t("serverDefault") }),
      ...catalog.base.map((m) => el("option", { value: m.name, text: m.name })));
    select.value = value;
    select.dispatchEvent(new Event("change"));
  });
  const editSelect = $("#chat-edit-model");
  if (editSelect) {  // models that edit by instruction; the session's or the server's when none is picked
    const value = editSelect.value;
    editSelect.replaceChildren(el("option", { value: "", text: t("default") }),
      ...catalog.base.filter((m) => m.modes.includes("instruct")).map((m) => el("option", { value: m.name, text: m.name })));
    editSelect.value = value;
  }
  $$(".p-scheduler").forEach((select) => {
    const value = select.value;
    select.replaceChildren(el("option", { value: "", text: t("default") }),
      ...catalog.samplers.map((name) => el("option", { value: name, text: name })));
    select.value = value;
  });
  fillLlmSelect();
  fillTrainingBase();
}

/* ---------- generation parameters (the same block in both generation tabs) ---------- */
const lastSeed = {};
function buildParams(prefix) {
  const host = $(`.params[data-prefix="${prefix}"]`);
  host.append($("#tpl-params").content.cloneNode(true));
  $$("[class]", host).forEach((node) => {
    const name = [...node.classList].find((c) => c.startsWith("p-"));
    if (name) node.id = `${prefix}-${name.slice(2)}`;
  });
  const field = (name) => $(`#${prefix}-${name}`);
  field("reuse-seed").addEventListener("click", () => {
    if (lastSeed[prefix] !== undefined) field("seed").value = lastSeed[prefix];
  });
  field("random-seed").addEventListener("click", () => { field("seed").value = -1; });
  field("add-lora").addEventListener("click", () => addLora(prefix));
  field("model").addEventListener("change", () => applyModel(prefix));
}
/* Offer only what the chosen model's family can do (GET /v1/models lists its modes and capabilities);
   the server default may be any model, so it leaves everything offered. */
const modelHooks = {};
function applyModel(prefix) {
  const field = (name) => $(`#${prefix}-${name}`);
  const model = catalog.base.find((m) => m.name === field("model").value);
  const negative = !model || model.capabilities.includes("negative_prompt");
  field("negative").disabled = !negative;
  field("negative").placeholder = negative ? "" : t("noNegative");
  if (!negative) field("negative").value = "";
  field("steps").placeholder = model ? String(model.default_steps) : t("native");
  field("guidance").placeholder = model && model.default_guidance != null ? String(model.default_guidance) : t("native");
  // VAEs that share the model's latent space (all of them while the server default is chosen)
  const vae = field("vae"), chosen = vae.value;
  vae.replaceChildren(el("option", { value: "", text: t("modelOwn") }),
    ...catalog.vae.filter((v) => !model || !model.latent || !v.latent || v.latent === model.latent)
      .map((v) => el("option", { value: v.name, text: v.name })));
  vae.value = [...vae.options].some((o) => o.value === chosen) ? chosen : "";
  if (modelHooks[prefix]) modelHooks[prefix](model);
}
function addLora(prefix, name, weight) {
  const row = el("div", { class: "lora-row" },
    el("select", { class: "lora-name" }, catalog.lora.map((m) => el("option", { value: m.name, text: m.name }))),
    el("input", { class: "lora-weight", type: "number", step: "0.1", value: weight ?? 1, title: t("weight") }),
    el("button", { type: "button", text: t("remove"), onclick: () => row.remove() }));
  if (name) $(".lora-name", row).value = name;
  $(`#${prefix}-loras`).append(row);
}
function readParams(prefix) {
  const field = (name) => $(`#${prefix}-${name}`);
  const body = { prompt: field("prompt").value, negative_prompt: field("negative").value };
  const optional = {
    model: field("model").value || undefined, width: num(field("width")), height: num(field("height")),
    steps: num(field("steps")), guidance_scale: num(field("guidance")), scheduler: field("scheduler").value || undefined,
    num_images: num(field("num")), vae: field("vae").value || undefined,
  };
  for (const [k, v] of Object.entries(optional)) if (v !== undefined) body[k] = v;
  const seed = seedOf(field("seed"));
  if (seed !== undefined) body.seed = seed;
  body.loras = $$(".lora-row", field("loras")).map((row) => ({
    name: $(".lora-name", row).value, weight: Number($(".lora-weight", row).value || 1),
  }));
  return body;
}

/* ---------- jobs: a card per job, live from the server-sent events ---------- */
function jobCard(container, job, prefix) {
  const card = el("div", { class: "job-card", dataset: { jobId: job.id } },
    el("div", { class: "job-head" },
      el("span", { class: "job-prompt", text: job.params.prompt }),
      el("span", { class: "job-mode", text: t(`mode.${job.params.mode || "txt2img"}`) }),
      el("progress", { max: "1", value: "0" }),
      el("span", { class: "job-status" }),
      el("button", { type: "button", class: "job-cancel", text: t("cancel"), onclick: () => cancelJob(card) })),
    el("div", { class: "job-error" }),
    el("div", { class: "job-images" }));
  card._prefix = prefix;
  container.prepend(card);
  updateCard(card, job);
  followJob(card, job.id);
  return card;
}
function updateCard(card, job) {
  card._job = job;
  const status = $(".job-status", card);
  status.dataset.status = job.status;
  status.textContent = `${t(`status.${job.status}`)} ${Math.round(job.progress * 100)}%`;
  $("progress", card).value = job.progress;
  $(".job-mode", card).textContent = t(`mode.${job.params.mode || "txt2img"}`);
  if (!$(".job-cancel", card).disabled) $(".job-cancel", card).textContent = t("cancel");
  const finished = ["succeeded", "failed", "cancelled"].includes(job.status);
  $(".job-cancel", card).hidden = finished;
  $(".job-error", card).textContent = job.error ? job.error.message : "";
  if (job.status === "succeeded" && $(".job-images", card).childElementCount === 0) {
    $(".job-images", card).append(...job.images.map((image) => imageFigure(image, job)));
    if (card._prefix) lastSeed[card._prefix] = job.seed;
  }
}
function imageFigure(image, job) {
  const img = el("img", { class: "result", alt: job.params.prompt, width: image.width, height: image.height });
  showImage(img, image.url);
  return el("figure", {},
    img,
    el("figcaption", {}, t("seedOf", { seed: image.seed }), " · ",
      el("a", { href: image.url, download: `${image.id}.png`, text: t("download") })));
}
async function cancelJob(card) {
  $(".job-cancel", card).disabled = true;
  $(".job-status", card).textContent = t("cancelling");
  try {
    updateCard(card, await api.post(`/v1/jobs/${card.dataset.jobId}/cancel`));
  } catch (error) {
    $(".job-error", card).textContent = error.message;
  } finally {
    $(".job-cancel", card).disabled = false;
  }
}
/* Server-sent events read with fetch (EventSource cannot send an API key); polling if the stream breaks. */
async function followJob(card, id) {
  try {
    const res = await request("GET", `/v1/jobs/${id}/events`);
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
        if (!data) continue;
        const job = parseJson(data);
        updateCard(card, job);
        if (block.includes("event: done")) return;
      }
    }
  } catch (error) { /* fall through to polling */ }
  for (;;) {
    let job = null;
    try {
      job = await api.get(`/v1/jobs/${id}`);
    } catch (error) {
      if (error.status >= 400 && error.status < 500) {  // gone or not ours: polling again will not help
        $(".job-error", card).textContent = error.message;
        return;
      }
    }
    if (job) updateCard(card, job);
    if (job && ["succeeded", "failed", "cancelled"].includes(job.status)) return;
    await new Promise((r) => setTimeout(r, 1000));
  }
}
async function submitJob(form, container, body, prefix) {
  const job = await api.post("/v1/jobs", body);
  return jobCard(container, job, prefix);
}

/* ---------- 文生图 ---------- */
function initTxt2img() {
  buildParams("t2i");
  const form = $("#t2i-form");
  modelHooks.t2i = (model) => {
    const able = !model || model.modes.includes("txt2img");
    $("#t2i-generate").disabled = !able;
    $("#t2i-generate").title = able ? "" : t("noTxt2img", { modes: model.modes.map((m) => t(`mode.${m}`)).join(", ") });
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(form, () => submitJob(form, $("#t2i-results"), readParams("t2i"), "t2i"), $("#t2i-generate"));
  });
}

/* ---------- 图生图, inpainting (mask painted here), outpainting, ControlNet ---------- */
const i2i = { init: null, initName: "init.png", maskDirty: false };
function initImg2img() {
  buildParams("i2i");
  const form = $("#i2i-form");
  const mode = $("#i2i-mode");
  const showMode = () => {
    $$("[data-modes]", form).forEach((node) => { node.hidden = !node.dataset.modes.split(" ").includes(mode.value); });
    $("#i2i-canvas-wrap").hidden = !i2i.init || !["img2img", "inpaint", "outpaint", "instruct"].includes(mode.value);
    $("#i2i-mask").hidden = mode.value !== "inpaint";
  };
  mode.addEventListener("change", showMode);
  i2i.showMode = showMode;
  modelHooks.i2i = (model) => {
    const options = [...mode.options];
    options.forEach((option) => { option.disabled = !!model && !model.modes.includes(option.value); });
    if (mode.selectedOptions[0]?.disabled) mode.value = (options.find((o) => !o.disabled) || options[0]).value;
    // ControlNets made for the model's family (all of them while the server default is chosen)
    const nets = $("#i2i-control-model"), chosen = nets.value;
    nets.replaceChildren(el("option", { value: "", text: t("cn.byKind") }),
      ...catalog.controlnet.filter((m) => !model || m.family === model.family)
        .map((m) => el("option", { value: m.name, text: m.name })));
    nets.value = [...nets.options].some((o) => o.value === chosen) ? chosen : "";
    showMode();
  };
  $("#i2i-init-file").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) guarded(form, () => setInitImage(file, file.name));
  });
  $("#i2i-clear-mask").addEventListener("click", clearMask);
  $("#i2i-preview-control").addEventListener("click", () =>
    guarded(form, previewControl, $("#i2i-preview-control")));
  paintable($("#i2i-mask"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(form, submitImg2img, $("#i2i-generate"));
  });
  showMode();
}
async function setInitImage(blob, name) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(blob);
  } catch (error) {
    throw new ApiError(422, "invalid_image", t("err.notImage"), "init_image");
  }
  i2i.init = blob;
  i2i.initName = name || "init.png";
  const canvas = $("#i2i-canvas"), mask = $("#i2i-mask");
  canvas.width = mask.width = bitmap.width;
  canvas.height = mask.height = bitmap.height;
  canvas.getContext("2d").drawImage(bitmap, 0, 0);
  clearMask();
  i2i.showMode();
}
function clearMask() {
  const mask = $("#i2i-mask");
  mask.getContext("2d").clearRect(0, 0, mask.width, mask.height);
  i2i.maskDirty = false;
}
function paintable(canvas) {
  let drawing = false;
  const point = (event) => {
    const rect = canvas.getBoundingClientRect();
    const scale = canvas.width / rect.width;
    return [(event.clientX - rect.left) * scale, (event.clientY - rect.top) * scale, scale];
  };
  const dot = (event) => {
    const [x, y, scale] = point(event);
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#fff";
    ctx.beginPath();
    ctx.arc(x, y, (Number($("#i2i-brush").value) / 2) * scale, 0, Math.PI * 2);
    ctx.fill();
    i2i.maskDirty = true;
  };
  canvas.addEventListener("pointerdown", (e) => { drawing = true; canvas.setPointerCapture(e.pointerId); dot(e); });
  canvas.addEventListener("pointermove", (e) => { if (drawing) dot(e); });
  canvas.addEventListener("pointerup", () => { drawing = false; });
  canvas.addEventListener("pointercancel", () => { drawing = false; });
}
/* White = repaint, black = keep, at the input's own size. */
function maskBlob() {
  const mask = $("#i2i-mask");
  const out = el("canvas", { width: mask.width, height: mask.height });
  const ctx = out.getContext("2d");
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, out.width, out.height);
  ctx.drawImage(mask, 0, 0);
  return new Promise((resolve) => out.toBlob(resolve, "image/png"));
}
async function controlUpload() {
  const file = $("#i2i-control-file").files[0];
  const source = file || i2i.init;
  if (!source) throw new ApiError(422, "invalid_parameters", t("cn.needImage"), "control");
  return upload(source, file ? file.name : i2i.initName);
}
async function previewControl() {
  const up = await controlUpload();
  const body = { image: up.id, kind: $("#i2i-control-kind").value, resize_mode: $("#i2i-resize").value };
  const width = num($("#i2i-width")), height = num($("#i2i-height"));
  if (width !== undefined) body.width = width;
  if (height !== undefined) body.height = height;
  const blob = await api.blob("POST", "/v1/control-maps", body);
  const img = $("#i2i-control-map");
  img.src = URL.createObjectURL(blob);
  img.hidden = false;
  await img.decode().catch(() => {});
  $("#i2i-control-caption").textContent = t("cn.previewOf", { kind: body.kind, w: img.naturalWidth, h: img.naturalHeight });
}
async function submitImg2img() {
  const mode = $("#i2i-mode").value;
  const body = { ...readParams("i2i"), mode };
  if (mode === "controlnet") {
    const up = await controlUpload();
    body.control = { image: up.id, kind: $("#i2i-control-kind").value, scale: num($("#i2i-control-scale")) ?? 1 };
    if ($("#i2i-control-model").value) body.control.model = $("#i2i-control-model").value;
  } else {
    if (i2i.init) body.init_image = (await upload(i2i.init, i2i.initName)).id;
    if (mode !== "instruct") body.strength = num($("#i2i-strength"));
    body.resize_mode = $("#i2i-resize").value;
    if (mode === "inpaint" && i2i.init) body.mask_image = (await upload(await maskBlob(), "mask.png")).id;
    if (mode === "outpaint") {
      body.outpaint = {
        left: num($("#i2i-out-left")) || 0, right: num($("#i2i-out-right")) || 0,
        up: num($("#i2i-out-up")) || 0, down: num($("#i2i-out-down")) || 0, fill: $("#i2i-out-fill").value,
      };
    }
  }
  if (body.strength === undefined) delete body.strength;
  return submitJob($("#i2i-form"), $("#i2i-results"), body, "i2i");
}

/* ---------- 历史 ---------- */
const gallery = { offset: 0, limit: 12, total: 0, page: null };
async function loadGallery() {
  const errors = $("#gallery-error");
  errors.textContent = "";
  try {
    gallery.page = await api.get(`/v1/jobs?limit=${gallery.limit}&offset=${gallery.offset}`);
    gallery.total = gallery.page.total;
  } catch (error) {
    errors.textContent = error.message;
    return;
  }
  renderGallery();
}
function renderGallery() {
  if (!gallery.page) return;
  const pages = Math.max(1, Math.ceil(gallery.total / gallery.limit));
  $("#gallery-page").textContent = t("page", {
    page: Math.floor(gallery.offset / gallery.limit) + 1, pages, total: gallery.total,
  });
  $("#gallery-prev").disabled = gallery.offset === 0;
  $("#gallery-next").disabled = gallery.offset + gallery.limit >= gallery.total;
  $("#gallery-list").replaceChildren(...gallery.page.items.map((job) => {
    const thumb = job.images.length
      ? el("img", { alt: job.params.prompt })
      : el("div", { class: "thumb-empty", text: t(`status.${job.status}`) });
    if (job.images.length) showImage(thumb, job.images[0].url);
    return el("div", { class: "gallery-item", dataset: { jobId: job.id }, onclick: () => openJob(job) },
      thumb,
      el("p", { title: job.params.prompt, text: job.params.prompt }),
      el("p", { class: "status", text: `${t(`mode.${job.params.mode || "txt2img"}`)} · ${t(`status.${job.status}`)} · ${new Date(job.created_at).toLocaleString()}` }));
  }));
}
function rerunBody(job, sameSeed) {
  const body = {};
  for (const [k, v] of Object.entries(job.params)) if (v !== null && v !== undefined) body[k] = v;
  if (sameSeed) body.seed = job.seed;
  else delete body.seed;
  return body;
}
function openJob(job) {
  const detail = $("#gallery-detail");
  const results = el("div", { class: "results" });
  const errors = el("div", { class: "form-error", role: "alert" });
  const holder = el("div", {}, errors);
  const rerun = (same) => guarded(holder, () => submitJob(holder, results, rerunBody(job, same)));
  detail.replaceChildren(
    el("div", { class: "toolbar" },
      el("strong", { text: job.params.prompt }),
      el("button", { type: "button", class: "rerun-same", text: t("rerunSame"), onclick: () => rerun(true) }),
      el("button", { type: "button", class: "rerun-new", text: t("rerunNew"), onclick: () => rerun(false) }),
      el("button", { type: "button", text: t("close"), onclick: () => { detail.hidden = true; } })),
    el("div", { class: "job-images" }, job.images.map((image) => {
      const figure = imageFigure(image, job);
      $("figcaption", figure).append(" · ",
        el("button", { type: "button", class: "send-i2i", text: t("sendI2i"), onclick: () => sendToImg2img(image) }));
      return figure;
    })),
    job.error ? el("p", { class: "job-error", text: job.error.message }) : null,
    el("h4", { text: t("params") }),
    el("pre", { class: "job-params", text: JSON.stringify({ ...job.params, seed: job.seed }, null, 2) }),
    holder, results);
  detail.hidden = false;
  detail.scrollIntoView({ block: "nearest" });
}
async function sendToImg2img(image) {
  const blob = await api.blob("GET", image.url);
  await setInitImage(blob, `${image.id}.png`);
  $("#i2i-mode").value = "img2img";
  i2i.showMode();
  showTab("img2img");
}

/* ---------- 对话改写 ---------- */
const chat = { session: null };
function initChat() {
  const start = $("#chat-start-form");
  start.addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(start, async () => {
      const body = { prompt: $("#chat-prompt").value };
      if ($("#chat-model").value) body.model = $("#chat-model").value;
      setSession(await api.post("/v1/prompt-sessions", body));
    }, $("#chat-start"));
  });
  const turn = $("#chat-turn-form");
  turn.addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(turn, async () => {
      const body = {
        instruction: $("#chat-instruction").value, rewrite: $("#chat-rewrite").checked,
        n: num($("#chat-n")), k: num($("#chat-k")), steps: num($("#chat-steps")),
        strategy: $("#chat-strategy").value, edit_model: $("#chat-edit-model").value || undefined,
      };
      const seed = seedOf($("#chat-seed"));
      if (seed !== undefined) body.seed = seed;
      for (const k of Object.keys(body)) if (body[k] === undefined) delete body[k];
      await api.post(`/v1/prompt-sessions/${chat.session.id}/turns`, body);
      $("#chat-instruction").value = "";
      await refreshSession();
    }, $("#chat-send"));
  });
  $("#chat-undo").addEventListener("click", () => guarded(turn, async () =>
    setSession(await api.post(`/v1/prompt-sessions/${chat.session.id}/undo`))));
  $("#chat-branch").addEventListener("click", () => guarded(turn, async () => {
    const value = $("#chat-branch-from").value;
    setSession(await api.post(`/v1/prompt-sessions/${chat.session.id}/branch`, { turn: value === "" ? null : Number(value) }));
  }));
}
async function refreshSession() {
  setSession(await api.get(`/v1/prompt-sessions/${chat.session.id}`));
}
function setSession(session) {
  chat.session = session;
  renderSession();
}
function renderSession() {
  const session = chat.session;
  if (!session) return;
  $("#chat-session").hidden = false;
  $("#chat-current").textContent = session.current_prompt;
  const select = $("#chat-branch-from");
  select.replaceChildren(el("option", { value: "", text: t("chat.origin") }),
    ...session.turns.map((turn) => el("option", { value: turn.number, text: `${t("chat.turn", { n: turn.number })}: ${turn.instruction}` })));
  if (session.head !== null) select.value = session.head;
  const onPath = new Set(session.path);
  $("#chat-log").replaceChildren(...session.turns.map((turn) => renderTurn(turn, onPath.has(turn.number))));
}
function renderTurn(turn, onPath) {
  const form = $("#chat-turn-form");
  const choose = (body) => guarded(form, async () => {
    await api.post(`/v1/prompt-sessions/${chat.session.id}/turns/${turn.number}/choose`, body);
    await refreshSession();
  });
  const editor = el("input", { type: "text", class: "edit-prompt", value: turn.chosen, title: t("chat.editHint") });
  return el("div", { class: `turn${onPath ? "" : " off-path"}`, dataset: { turn: turn.number } },
    el("h4", {}, t("chat.turn", { n: turn.number }), "：", turn.instruction,
      el("span", { class: "status", text: turn.parent === null ? t("chat.fromOrigin") : t("chat.from", { p: turn.parent }) })),
    turn.note ? el("p", { class: "note", text: turn.note }) : null,
    el("div", { class: "candidates" }, turn.candidates.map((c, index) => {
      const img = el("img", { alt: c.prompt });
      if (c.image_url) showImage(img, c.image_url);
      const chosen = turn.chosen_index === index;
      const scores = Object.entries(c.scores).map(([name, value]) => `${name} ${fmt(value, 2)}`).join(" · ");
      return el("div", { class: `candidate${chosen ? " chosen" : ""}`, dataset: { index } },
        img,
        el("p", { class: "c-prompt", text: c.prompt }),
        el("p", { class: "scores" }, `${t("chat.score")} ${fmt(c.score, 3)} · ${t(`chat.source.${c.source}`)}`,
          el("br"), scores, el("br"), `${t("chat.drift")} ${fmt(c.drift, 2)}`,
          c.drifted ? el("span", { class: "drifted", text: ` ${t("chat.drifted")}` }) : null),
        el("button", { type: "button", class: "choose", disabled: chosen, text: chosen ? t("chat.chosen") : t("chat.choose"),
          onclick: () => choose({ index }) }));
    })),
    el("div", { class: "edit-box" }, editor,
      el("button", { type: "button", class: "use-edited", text: t("chat.useEdited"), onclick: () => choose({ prompt: editor.value }) })));
}

/* ---------- 知识问答 ---------- */
const knowledge = { last: null };
function initKnowledge() {
  const form = $("#kn-form");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(form, async () => {
      knowledge.last = await api.post("/v1/knowledge/queries", {
        question: $("#kn-question").value, retrieval: $("#kn-retrieval").value, top_k: num($("#kn-topk")) ?? 5,
      });
      renderKnowledge();
    }, $("#kn-ask"));
  });
  const docs = $("#kn-docs-form");
  docs.addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(docs, async () => {
      const documents = await Promise.all([...$("#kn-files").files].map(async (file) => ({ source: file.name, text: await file.text() })));
      if ($("#kn-doc-name").value.trim() || $("#kn-doc-text").value.trim()) {
        documents.push({ source: $("#kn-doc-name").value, text: $("#kn-doc-text").value });
      }
      const result = await api.post("/v1/knowledge/documents", { documents });
      $("#kn-ingest-status").textContent = t("kn.ingested", {
        docs: result.documents ?? documents.length, chunks: result.chunks ?? "?",
      });
    }, $("#kn-ingest"));
  });
}
function renderKnowledge() {
  const q = knowledge.last;
  if (!q) return;
  $("#kn-result").hidden = false;
  const retrieved = q.decision === "retrieved";
  const signals = Object.entries(q.signals).filter(([, v]) => v !== null && v !== undefined);
  $("#kn-result").replaceChildren(
    el("p", {}, el("span", { class: `badge decision${retrieved ? " retrieved" : ""}`, id: "kn-decision", dataset: { decision: q.decision },
      text: retrieved ? t("kn.retrieved") : t("kn.parametric") })),
    el("p", { class: "answer", id: "kn-answer", text: q.answer }),
    retrieved && q.parametric_answer ? el("p", { class: "status" }, `${t("kn.ownAnswer")}：`, q.parametric_answer) : null,
    el("h4", { text: t("kn.signals") }),
    el("table", { class: "kv", id: "kn-signals" }, signals.map(([k, v]) => el("tr", {}, el("th", { text: t(`sig.${k}`) }), el("td", { text: fmt(v) })))),
    el("h4", { text: t("kn.sources") }),
    q.passages.length
      ? el("div", { id: "kn-passages" }, q.passages.map((p) => el("div", { class: "passage" },
        el("div", { class: "src", text: `${p.source} · ${fmt(p.score)}` }), el("div", { text: p.text }))))
      : el("p", { class: "status", text: t("kn.noSources") }),
    el("h4", { text: t("kn.timings") }),
    el("table", { class: "kv", id: "kn-timings" }, Object.entries(q.timings).map(([k, v]) => el("tr", {}, el("th", { text: k }), el("td", { text: fmt(v) })))));
}

/* ---------- 对话: the language model through POST /v1/chat/completions, streamed ---------- */
const llm = { turns: [], controller: null };
function variantNote(model) {
  if (model.default) return t("llm.kind.default");
  if (model.kind === "llm-lora") return t("llm.kind.lora");
  if (model.id.endsWith("@base")) return t("llm.kind.base");
  if (model.id.endsWith("+knowledge")) return t("llm.kind.knowledge");
  return model.parent ? t("llm.kind.variant", { parent: model.parent }) : t("llm.kind.other");
}
function fillLlmSelect() {
  const select = $("#llm-model");
  const value = select.value;
  select.replaceChildren(...catalog.llm.map((m) => el("option", { value: m.id, text: `${m.id} — ${variantNote(m)}` })));
  if (!catalog.llm.length) select.append(el("option", { value: "", text: t("llm.none") }));
  const fallback = catalog.llm.find((m) => m.default) || catalog.llm[0];
  select.value = catalog.llm.some((m) => m.id === value) ? value : (fallback ? fallback.id : "");
  setLlmBusy(llm.controller !== null);
}
function setLlmBusy(busy) {
  $("#llm-send").disabled = busy || !catalog.llm.length;
  $("#llm-stop").hidden = !busy;
}
function initLlm() {
  const form = $("#llm-form");
  const input = $("#llm-input");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    sendLlm();
  });
  input.addEventListener("keydown", (event) => {  // Enter sends, Shift+Enter is a new line; not while an IME composes
    if (event.key !== "Enter" || event.shiftKey || event.isComposing) return;
    event.preventDefault();
    if (!$("#llm-send").disabled) sendLlm();
  });
  $("#llm-stop").addEventListener("click", () => { if (llm.controller) llm.controller.abort(); });
  $("#llm-new").addEventListener("click", () => {
    if (llm.controller) llm.controller.abort();
    llm.turns = [];
    clearErrors(form);
    renderLlm();
    input.focus();
  });
}
async function sendLlm() {
  const form = $("#llm-form");
  const input = $("#llm-input");
  if (llm.controller) return;
  clearErrors(form);
  showBanner("");
  const text = input.value;
  if (!text.trim()) {
    showError(form, new ApiError(0, "invalid_parameters", t("llm.empty"), "messages"));
    return;
  }
  const model = $("#llm-model").value;
  const system = $("#llm-system").value.trim();
  const body = {
    model,
    messages: [...(system ? [{ role: "system", content: system }] : []),
      ...llm.turns.map((m) => ({ role: m.role, content: m.content })), { role: "user", content: text }],
    max_tokens: num($("#llm-max-tokens")), temperature: num($("#llm-temperature")), stream: true,
  };
  for (const k of Object.keys(body)) if (body[k] === undefined) delete body[k];
  const asked = { role: "user", content: text };
  const reply = { role: "assistant", content: "", model, streaming: true, knowledge: null, note: null };
  llm.turns.push(asked, reply);
  input.value = "";
  renderLlm();
  const controller = new AbortController();
  llm.controller = controller;
  setLlmBusy(true);
  try {
    await streamChat(body, controller.signal, reply);
  } catch (error) {
    const stopped = error.name === "AbortError";
    if (llm.turns.includes(reply)) {  // not cleared by a new conversation meanwhile
      if (!stopped) {
        showError(form, error);
        if (!(error instanceof ApiError)) console.error(error);
      }
      if (!reply.content && !reply.knowledge) {  // nothing came: take the message back, to send again
        llm.turns.splice(llm.turns.indexOf(asked), 2);
        if (!input.value) input.value = text;
      } else {
        reply.note = stopped ? "llm.stopped" : "llm.broken";
      }
    }
  } finally {
    reply.streaming = false;
    llm.controller = null;
    setLlmBusy(false);
    renderLlm();
  }
}
/* The reply's server-sent events read with fetch (for the API key header and to stop by aborting). */
async function streamChat(body, signal, reply) {
  const res = await request("POST", "/v1/chat/completions", body, signal);
  if (!(res.headers.get("content-type") || "").startsWith("text/event-stream")) {  // an answer in one piece
    receiveChunk(reply, await res.json());
    return;
  }
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
      if (!data) continue;
      if (data === "[DONE]") return;
      receiveChunk(reply, JSON.parse(data));
    }
  }
}
function receiveChunk(reply, chunk) {
  if (chunk.error) {  // a failure after the reply had begun comes inside the stream, in OpenAI's shape
    throw new ApiError(0, chunk.error.code || "stream_error", chunk.error.message || t("err.unexpected", { msg: "" }),
      chunk.error.param);
  }
  const choice = (chunk.choices || [])[0];
  const content = choice && (choice.delta ? choice.delta.content : choice.message && choice.message.content);
  if (chunk.knowledge) {
    reply.knowledge = chunk.knowledge;
    reply.content += content || "";
    renderLlm();
    return;
  }
  if (!content) return;
  reply.content += content;
  if (reply.text) reply.text.textContent = reply.content;
  scrollLlm();
}
function renderLlm() {
  const log = $("#llm-log");
  log.replaceChildren(...llm.turns.map(bubble));
  log.hidden = llm.turns.length === 0;
  scrollLlm();
}
function scrollLlm() {
  const log = $("#llm-log");
  log.scrollTop = log.scrollHeight;
}
function bubble(message) {
  message.text = el("div", { class: "msg-text", text: message.content });
  if (message.role === "user") return el("div", { class: "msg user" }, message.text);
  return el("div", { class: `msg assistant${message.streaming ? " streaming" : ""}`, dataset: { model: message.model } },
    el("div", { class: "msg-meta", text: message.model }),
    message.text,
    message.note ? el("div", { class: "msg-note", text: t(message.note) }) : null,
    message.knowledge ? knowledgeLine(message.knowledge) : null);
}
/* How a NAME+knowledge reply was made: the decision, and the sources with their scores (the text on hover). */
function knowledgeLine(k) {
  const retrieved = k.decision === "retrieved";
  const sources = k.sources || [];
  return el("div", { class: "msg-knowledge" },
    el("span", { class: `badge decision${retrieved ? " retrieved" : ""}`, dataset: { decision: k.decision },
      title: k.gece_estimate == null ? null : `${t("sig.gece_estimate")} ${fmt(k.gece_estimate)}`,
      text: retrieved ? t("llm.retrieved") : t("llm.parametric") }),
    sources.length ? el("span", { text: t("kn.sources") }) : null,
    sources.map((s) => el("span", { class: "source", title: s.text, text: `${s.source} · ${fmt(s.score, 2)}` })));
}

/* ---------- 模型编辑 ---------- */
const edits = { items: [], compare: null };
async function askModel(question) {
  const query = await api.post("/v1/knowledge/queries", { question, retrieval: "never" });
  return query.answer;
}
function initEdits() {
  const form = $("#ed-form");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(form, async () => {
      const prompt = $("#ed-prompt").value;
      const before = await askModel(prompt).catch((e) => t("ed.noAnswer", { msg: e.message }));
      const edit = await api.post("/v1/edits", {
        prompt, target: $("#ed-target").value, subject: $("#ed-subject").value, editor: $("#ed-editor").value,
      });
      const after = await askModel(prompt).catch((e) => t("ed.noAnswer", { msg: e.message }));
      edits.compare = { edit, before, after };
      renderCompare();
      await loadEdits();
    }, $("#ed-apply"));
  });
  const ask = $("#ed-ask-form");
  ask.addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(ask, async () => { $("#ed-ask-answer").textContent = await askModel($("#ed-ask-prompt").value); }, $("#ed-ask"));
  });
  $("#ed-refresh").addEventListener("click", loadEdits);
  $("#ed-rollback-all").addEventListener("click", () => rollback(0));
}
function renderCompare() {
  const c = edits.compare;
  if (!c) return;
  const s = c.edit.scores;
  $("#ed-compare").hidden = false;
  $("#ed-compare").replaceChildren(
    el("p", {}, `#${c.edit.position} · ${c.edit.editor} · ${t("ed.targetWas")}：`, el("strong", { text: c.edit.spec.target })),
    el("div", { class: "compare" },
      el("div", {}, el("h4", { text: t("ed.before") }), el("p", { class: "answer", id: "ed-before", text: c.before })),
      el("div", {}, el("h4", { text: t("ed.after") }), el("p", { class: "answer", id: "ed-after", text: c.after }))),
    el("p", { class: "status", text: `reliability ${fmt(s.reliability, 2)} · generality ${fmt(s.generality, 2)} · locality ${fmt(s.locality, 2)}` }));
}
async function loadEdits() {
  const errors = $("#ed-log-error");
  errors.textContent = "";
  errors.classList.remove("ok");
  try {
    edits.items = (await api.get("/v1/edits?limit=200")).items;
  } catch (error) {
    errors.textContent = error.message;
    return;
  }
  renderEdits();
}
function renderEdits() {
  $("#ed-log tbody").replaceChildren(...edits.items.map((edit) => {
    const s = edit.scores;
    const active = edit.status === "applied";
    return el("tr", { class: edit.status, dataset: { position: edit.position, status: edit.status } },
      el("td", { text: edit.position }), el("td", { text: edit.spec.prompt }), el("td", { text: edit.spec.target }),
      el("td", { text: edit.editor }), el("td", { class: "edit-status", text: t(`ed.${edit.status}`) }),
      el("td", { text: `rel ${fmt(s.reliability, 2)} · gen ${fmt(s.generality, 2)} · loc ${fmt(s.locality, 2)}` }),
      el("td", {}, active ? el("button", { type: "button", class: "rollback-to", text: t("ed.rollbackTo"), onclick: () => rollback(edit.position) }) : null));
  }));
}
async function rollback(to) {
  const errors = $("#ed-log-error");
  errors.textContent = "";
  try {
    const result = await api.post("/v1/edits/rollback", { to });
    await loadEdits();
    errors.textContent = t("ed.rolledBack", { to, n: result.rolled_back.length });
    errors.classList.add("ok");
  } catch (error) {
    errors.classList.remove("ok");
    errors.textContent = error.message;
  }
}

/* ---------- 训练: an image LoRA (a .zip of captioned images) or a language model fine-tune (a .jsonl of chats) ---------- */
/* The server's defaults per kind, shown as placeholders: what a field left empty trains with. */
const TRAINING_DEFAULTS = {
  "image-lora": { epochs: 10, lr: "1e-4", batch: 4, rank: 8 },
  "llm-finetune": { epochs: 3, lr: "1e-3", batch: 8, rank: 16 },
};
const FINISHED = ["succeeded", "failed", "cancelled"];
const training = {
  kind: "image-lora", job: null, watch: 0, seq: 0, losses: new Map(), validation: new Map(), samples: [],
  message: "", problem: "", cancelling: null, jobs: null,
};
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
function trainingKindOf(file) {
  const name = file.name.toLowerCase();
  if (name.endsWith(".zip")) return "image-lora";
  if (name.endsWith(".jsonl")) return "llm-finetune";
  return null;
}
const trainingKindText = (kind) => t(kind === "image-lora" ? "tr.kindImage" : "tr.kindLlm");
const trainingStatus = (status) => (status === "running" ? t("tr.running") : t(`status.${status}`));
function initTraining() {
  const form = $("#tr-form");
  $("#tr-file").addEventListener("change", () => {
    clearErrors(form);
    const file = $("#tr-file").files[0];
    const kind = file ? trainingKindOf(file) : training.kind;
    if (!kind) showError(form, new ApiError(0, "invalid_file", t("tr.badFile"), "training_file"));
    training.kind = kind || training.kind;
    renderTrainingForm();
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(form, startTraining, $("#tr-start"));
  });
  $("#tr-cancel").addEventListener("click", cancelTraining);
  $("#tr-use").addEventListener("click", useTrainingResult);
  $("#tr-refresh").addEventListener("click", loadTrainings);
}
function renderTrainingForm() {
  const kind = training.kind;
  const defaults = TRAINING_DEFAULTS[kind];
  $("#tr-epochs").placeholder = defaults.epochs;
  $("#tr-lr").placeholder = defaults.lr;
  $("#tr-batch").placeholder = defaults.batch;
  $("#tr-rank").placeholder = defaults.rank;
  $$("[data-kinds]", $("#tr-form")).forEach((node) => { node.hidden = !node.dataset.kinds.split(" ").includes(kind); });
  $("#tr-kind").textContent = trainingKindText(kind);
  $("#tr-file-hint").textContent = t(kind === "image-lora" ? "tr.fileHintImage" : "tr.fileHintLlm");
  fillTrainingBase();
}
/* Image models whose LoRAs can be trained (the SD family), or the language models themselves (not their variants). */
function trainingBases() {
  if (training.kind === "image-lora") {
    return catalog.base.filter((m) => (m.capabilities || []).includes("lora_training")).map((m) => ({ value: m.name }));
  }
  return catalog.llm.filter((m) => m.kind === "llm" && !m.parent).map((m) => ({ value: m.id, default: m.default }));
}
function fillTrainingBase() {
  const select = $("#tr-base");
  const value = select.value;
  const bases = trainingBases();
  select.replaceChildren(...bases.map((b) => el("option", { value: b.value, text: b.value })));
  if (!bases.length) select.append(el("option", { value: "", text: t("tr.noBase") }));
  const fallback = bases.find((b) => b.default) || bases[0];
  select.value = bases.some((b) => b.value === value) ? value : (fallback ? fallback.value : "");
}
/* Errors land next to the field they are about: the server names some fields as its OpenAI-shaped routes do
   (the upload's `file`), and some errors only by their code. */
const TRAINING_FIELDS = { file: "training_file", purpose: "training_file" };  // the upload's fields
const TRAINING_CODES = {
  unknown_model: "base_model", unsupported_training: "base_model", model_exists: "name", file_not_found: "training_file",
};
function atTrainingField(error, fallback) {
  if (!(error instanceof ApiError) || error.status === 0) return error;
  if (error.field) error.field = TRAINING_FIELDS[String(error.field).split(".")[0]] || error.field;
  else error.field = TRAINING_CODES[error.code] || ([400, 413, 422].includes(error.status) ? fallback : null);
  return error;
}
async function startTraining() {
  const file = $("#tr-file").files[0];
  if (!file) throw new ApiError(0, "invalid_parameters", t("tr.needFile"), "training_file");
  const kind = trainingKindOf(file);
  if (!kind) throw new ApiError(0, "invalid_file", t("tr.badFile"), "training_file");
  const name = $("#tr-name").value.trim();
  if (!name) throw new ApiError(0, "invalid_parameters", t("tr.needName"), "name");
  const base = $("#tr-base").value;
  if (!base) throw new ApiError(0, "invalid_parameters", t("tr.needBase"), "base_model");
  const data = new FormData();
  data.append("file", file, file.name);
  data.append("purpose", kind === "image-lora" ? "image-lora" : "fine-tune");
  let uploaded;
  try {
    uploaded = await json(await request("POST", "/v1/files", data));
  } catch (error) {
    throw atTrainingField(error, "training_file");
  }
  const body = {
    kind, base_model: base, name, training_file: uploaded.id, epochs: num($("#tr-epochs")),
    learning_rate: num($("#tr-lr")), batch_size: num($("#tr-batch")), lora_rank: num($("#tr-rank")),
  };
  if (kind === "image-lora") {
    const trigger = $("#tr-trigger").value.trim();
    const prompt = $("#tr-sample-prompt").value.trim();
    Object.assign(body, {
      trigger_word: trigger || undefined, sample_prompts: prompt ? [prompt] : undefined,
      sample_steps: num($("#tr-sample-steps")), checkpoint_every: num($("#tr-checkpoint-every")),
    });
  }
  for (const k of Object.keys(body)) if (body[k] === undefined) delete body[k];
  let job;
  try {
    job = await api.post("/v1/trainings", body);
  } catch (error) {
    throw atTrainingField(error, null);
  }
  watchTraining(job);
  loadTrainings();
}
/* Follow a job: its state and the events after the last one seen, every second until it ends. */
async function watchTraining(job) {
  const token = ++training.watch;
  training.samples.forEach((sample) => { if (sample.url) URL.revokeObjectURL(sample.url); });
  Object.assign(training, {
    job, seq: 0, losses: new Map(), validation: new Map(), samples: [], message: "", problem: "", cancelling: null,
  });
  localStorage.setItem("atelier.training", job.id);
  $("#tr-samples").replaceChildren();
  renderTrainingJob();
  renderTrainings();
  for (;;) {
    try {
      const current = await api.get(`/v1/trainings/${job.id}`);
      const events = await api.get(`/v1/trainings/${job.id}/events?after=${training.seq}`);
      if (token !== training.watch) return;
      training.job = current;
      training.problem = "";
      receiveTrainingEvents(events, token);
    } catch (error) {
      if (token !== training.watch) return;
      training.problem = error.message;
      if (error.status >= 400 && error.status < 500) {  // gone or not ours: asking again will not help
        renderTrainingJob();
        return;
      }
    }
    renderTrainingJob();
    if (training.jobs) {  // the list shows the job as it is now
      training.jobs = training.jobs.map((j) => (j.id === training.job.id ? training.job : j));
      renderTrainings();
    }
    if (FINISHED.includes(training.job.status)) {
      if (training.job.status === "succeeded") await loadCatalog();  // the result joins the model pickers
      if (token === training.watch) loadTrainings();
      return;
    }
    await sleep(1000);
    if (token !== training.watch) return;
  }
}
function receiveTrainingEvents(events, token) {
  for (const event of events) {
    training.seq = Math.max(training.seq, event.seq);
    if (event.kind === "metrics" && event.step != null) {  // a step reported again after a resume replaces the first
      if (event.loss != null) training.losses.set(event.step, event.loss);
      if (event.validation_loss != null) training.validation.set(event.step, event.validation_loss);
    } else if (event.kind === "sample") {
      for (const name of event.images) addSample(event.step, name, token);
    } else if (event.kind === "message") {
      training.message = event.message;
    }
  }
}
/* Sample PNGs need the API key when the server has keys: fetched, and shown through an object URL. */
function addSample(step, name, token) {
  const id = training.job.id;
  const sample = { step, name, url: null };
  const img = el("img", { class: "sample", alt: name });
  training.samples.push(sample);
  $("#tr-samples").append(el("figure", { dataset: { step, image: name } },
    img, el("figcaption", { dataset: { step }, text: t("tr.stepOf", { step }) })));
  api.blob("GET", `/v1/trainings/${id}/samples/${encodeURIComponent(name)}`)
    .then((blob) => {
      if (token !== training.watch) return;
      sample.url = URL.createObjectURL(blob);
      img.src = sample.url;
    })
    .catch((error) => { img.alt = error.message; });
}
function renderTrainingJob() {
  const job = training.job;
  const card = $("#tr-job");
  card.hidden = !job;
  if (!job) return;
  card.dataset.trainingId = job.id;
  card.dataset.status = job.status;
  $("#tr-job-name").textContent = job.name;
  $("#tr-job-kind").textContent = `${trainingKindText(job.kind)} · ${job.base_model}`;
  $("#tr-progress").value = job.progress;
  $("#tr-steps").textContent = t("tr.steps", { step: job.step, total: job.total_steps ?? "—" });
  $("#tr-loss").textContent = t("tr.loss", { loss: fmt(job.loss, 4) });
  const finished = FINISHED.includes(job.status);
  const status = $("#tr-status");
  status.dataset.status = job.status;
  status.textContent = !finished && training.cancelling === job.id
    ? t("cancelling") : `${trainingStatus(job.status)} ${Math.round(job.progress * 100)}%`;
  $("#tr-cancel").hidden = finished;
  const use = $("#tr-use");
  use.hidden = job.status !== "succeeded";
  use.textContent = t(job.kind === "image-lora" ? "tr.useImage" : "tr.useLlm");
  $("#tr-error").textContent = job.error ? job.error.message : training.problem;
  $("#tr-message").textContent = training.message;
  $$("#tr-samples figcaption").forEach((caption) => { caption.textContent = t("tr.stepOf", { step: caption.dataset.step }); });
  drawLossPlot();
}
/* The loss curve as an inline SVG: training loss per step, validation loss (after each epoch) as a second series. */
function drawLossPlot() {
  const svg = $("#tr-plot");
  const node = (tag, attrs, text) => {
    const made = document.createElementNS(svg.namespaceURI, tag);  // the page's own <svg> gives the namespace
    for (const [k, v] of Object.entries(attrs || {})) made.setAttribute(k, v);
    if (text !== undefined) made.textContent = text;
    return made;
  };
  const [width, height, left, right, top, bottom] = [560, 220, 58, 14, 14, 38];
  const train = [...training.losses].sort((a, b) => a[0] - b[0]);
  const valid = [...training.validation].sort((a, b) => a[0] - b[0]);
  const losses = [...train, ...valid].map(([, loss]) => loss);
  const steps = [...train, ...valid].map(([step]) => step);
  const last = Math.max(1, training.job.total_steps || 0, ...steps);
  const first = last > 1 ? 1 : 0;
  let low = losses.length ? Math.min(...losses) : 0;
  let high = losses.length ? Math.max(...losses) : 1;
  if (high - low < 1e-9) { const pad = Math.abs(high) * 0.1 || 0.5; low -= pad; high += pad; }
  const x = (step) => left + ((step - first) / (last - first)) * (width - left - right);
  const y = (loss) => top + (1 - (loss - low) / (high - low)) * (height - top - bottom);
  const points = (series) => series.map(([step, loss]) => `${x(step).toFixed(1)},${y(loss).toFixed(1)}`).join(" ");
  const label = (value) => Number(value).toPrecision(3);
  const parts = [];
  for (const value of [high, (high + low) / 2, low]) {
    parts.push(node("line", { class: "grid", x1: left, x2: width - right, y1: y(value), y2: y(value) }),
      node("text", { class: "tick", x: left - 5, y: y(value) + 4, "text-anchor": "end" }, label(value)));
  }
  const middle = Math.round((first + last) / 2);
  for (const step of new Set([first, middle, last])) {
    parts.push(node("text", { class: "tick", x: x(step), y: height - bottom + 15, "text-anchor": "middle" }, String(step)));
  }
  parts.push(
    node("line", { class: "axis", x1: left, y1: height - bottom, x2: width - right, y2: height - bottom }),
    node("line", { class: "axis", x1: left, y1: top, x2: left, y2: height - bottom }),
    node("text", { class: "axis-label", x: (left + width - right) / 2, y: height - 6, "text-anchor": "middle" }, t("tr.axisStep")),
    node("text", { class: "axis-label", "text-anchor": "middle",
      transform: `translate(14 ${(top + height - bottom) / 2}) rotate(-90)` }, t("tr.axisLoss")),
    node("polyline", { class: "loss-line", points: points(train), "data-count": train.length }));
  if (train.length) {
    const [step, loss] = train[train.length - 1];
    parts.push(node("circle", { class: "loss-last", cx: x(step), cy: y(loss), r: 3 }));
  } else {
    parts.push(node("text", { class: "empty", x: (left + width - right) / 2, y: (top + height - bottom) / 2,
      "text-anchor": "middle" }, t("tr.noLoss")));
  }
  const legend = [["loss-line", t("tr.trainLoss")]];
  if (valid.length) {
    parts.push(node("polyline", { class: "val-line", points: points(valid), "data-count": valid.length }),
      ...valid.map(([step, loss]) => node("circle", { class: "val-point", cx: x(step), cy: y(loss), r: 3 })));
    legend.push(["val-line", t("tr.validLoss")]);
  }
  legend.forEach(([kind, text], index) => {
    const at = top + 6 + index * 15;
    parts.push(node("line", { class: kind, x1: width - right - 130, x2: width - right - 112, y1: at, y2: at }),
      node("text", { class: "legend", x: width - right - 106, y: at + 4 }, text));
  });
  svg.setAttribute("aria-label", `${t("tr.trainLoss")}: ${train.length ? label(train[train.length - 1][1]) : "—"}`);
  svg.replaceChildren(...parts);
}
async function cancelTraining() {
  const job = training.job;
  if (!job) return;
  const button = $("#tr-cancel");
  button.disabled = true;
  training.cancelling = job.id;
  renderTrainingJob();
  try {
    const cancelled = await api.post(`/v1/trainings/${job.id}/cancel`);
    if (training.job && training.job.id === job.id) training.job = cancelled;
  } catch (error) {
    training.cancelling = null;
    training.problem = error.message;
  } finally {
    button.disabled = false;
    renderTrainingJob();
  }
}
/* A LoRA goes into the text-to-image prompt as <lora:NAME:0.8> (its base model chosen); a fine-tuned language
   model is chosen in the chat tab. */
async function useTrainingResult() {
  const job = training.job;
  if (!job || job.status !== "succeeded") return;
  await loadCatalog();
  if (job.kind === "image-lora") {
    const prompt = $("#t2i-prompt");
    const tag = `<lora:${job.result_model || job.name}:0.8>`;
    if (!prompt.value.includes(tag)) prompt.value = prompt.value.trim() ? `${prompt.value.trimEnd()} ${tag}` : tag;
    const model = $("#t2i-model");
    if ([...model.options].some((o) => o.value === job.base_model)) {
      model.value = job.base_model;
      model.dispatchEvent(new Event("change"));
    }
    showTab("txt2img");
    prompt.focus();
    return;
  }
  const select = $("#llm-model");
  if (![...select.options].some((o) => o.value === job.result_model)) {
    select.append(el("option", { value: job.result_model, text: job.result_model }));
  }
  select.value = job.result_model;
  setLlmBusy(llm.controller !== null);
  showTab("llm");
  $("#llm-input").focus();
}
async function loadTrainings() {
  const errors = $("#tr-list-error");
  errors.textContent = "";
  try {
    training.jobs = (await api.get("/v1/trainings?limit=50")).items;
  } catch (error) {
    errors.textContent = error.message;
    return;
  }
  renderTrainings();
}
function renderTrainings() {
  if (!training.jobs) return;
  const rows = training.jobs.map((job) => {
    const watched = training.job && training.job.id === job.id;
    const loss = job.loss != null ? ` · ${fmt(job.loss, 4)}` : "";
    return el("tr", { class: watched ? "watched" : null, dataset: { trainingId: job.id, status: job.status } },
      el("td", { text: job.name }), el("td", { text: trainingKindText(job.kind) }), el("td", { text: job.base_model }),
      el("td", {}, el("span", { class: "job-status", dataset: { status: job.status }, text: trainingStatus(job.status) })),
      el("td", { text: `${job.step} / ${job.total_steps ?? "—"}${loss}` }),
      el("td", { text: new Date(job.created_at).toLocaleString() }),
      el("td", {}, el("button", { type: "button", class: "tr-open", text: t("tr.open"), onclick: () => watchTraining(job) })));
  });
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: "7", class: "status", text: t("tr.none") })));
  $("#tr-list tbody").replaceChildren(...rows);
}
/* On showing the tab: the list, and (after a reload) the job last watched, or one still running. */
async function showTraining() {
  await loadTrainings();
  if (training.job || !training.jobs) return;
  const remembered = localStorage.getItem("atelier.training");
  const job = training.jobs.find((j) => j.id === remembered) || training.jobs.find((j) => !FINISHED.includes(j.status));
  if (job) watchTraining(job);
}

/* ---------- tabs and start-up ---------- */
function showTab(name) {
  $$(".tabs button").forEach((b) => b.classList.toggle("active", b.dataset.tab === name));
  $$(".panel").forEach((p) => p.classList.toggle("active", p.id === `panel-${name}`));
  if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
  if (name === "gallery") loadGallery();
  if (name === "edits") loadEdits();
  if (name === "training") showTraining();
}
function rerenderAll() {
  fillCatalogSelects();
  renderGallery();
  renderSession();
  renderKnowledge();
  renderLlm();
  renderCompare();
  renderEdits();
  renderTrainingForm();
  renderTrainingJob();
  renderTrainings();
  $$(".job-card").forEach((card) => card._job && updateCard(card, card._job));
}
function init() {
  initTxt2img();
  initImg2img();
  initChat();
  initKnowledge();
  initLlm();
  initEdits();
  initTraining();
  $$(".tabs button").forEach((b) => b.addEventListener("click", () => showTab(b.dataset.tab)));
  $("#gallery-refresh").addEventListener("click", loadGallery);
  $("#gallery-prev").addEventListener("click", () => { gallery.offset = Math.max(0, gallery.offset - gallery.limit); loadGallery(); });
  $("#gallery-next").addEventListener("click", () => { gallery.offset += gallery.limit; loadGallery(); });
  $("#lang-switch").addEventListener("click", () => setLang(lang === "zh" ? "en" : "zh"));
  const key = $("#api-key");
  key.value = localStorage.getItem("atelier.apiKey") || "";
  key.addEventListener("change", () => {
    if (key.value.trim()) localStorage.setItem("atelier.apiKey", key.value.trim());
    else localStorage.removeItem("atelier.apiKey");
    showBanner("");
    loadCatalog();
  });
  setLang(lang);
  loadCatalog();
  const tab = location.hash.slice(1);
  if ($(`#panel-${tab}`)) showTab(tab);
  document.body.dataset.ready = "true";
}
document.addEventListener("DOMContentLoaded", init);
