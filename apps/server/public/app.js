// Kascade playground: chat over /v1/chat/completions with SSE streaming, and a live view of
// what the attention policy did (from the stream's usage chunk).

const $ = (id) => document.getElementById(id);

const state = { model: undefined, layers: 0, history: [], controller: undefined };

function fmt(value, digits = 1) {
  return Number.isFinite(value) ? value.toFixed(digits) : '–';
}

function showError(message) {
  const box = $('error');
  box.textContent = message;
  box.hidden = message === '';
}

function renderLayers(anchorLayers) {
  const list = $('anchors');
  list.replaceChildren();
  const anchors = new Set(anchorLayers);
  for (let layer = 0; layer < state.layers; layer++) {
    const item = document.createElement('li');
    item.textContent = String(layer);
    item.title = anchors.has(layer) ? `layer ${layer}: anchor` : `layer ${layer}: reuses the latest anchor`;
    if (anchors.has(layer)) item.className = 'anchor';
    list.append(item);
  }
}

async function loadModel() {
  const res = await fetch('/v1/models');
  const body = await res.json();
  const card = body.data[0];
  const info = card.kascade ?? {};
  state.model = card.id;
  state.layers = info.layers ?? 0;
  $('model-line').textContent =
    `${card.id} · ${info.architecture ?? '?'} · ${state.layers} layers · context ${info.max_context ?? '?'} · ` +
    `backend ${info.backend ?? '?'} · plan ${info.plan_loaded ? 'loaded' : 'none (dense only)'}`;
  $('random-warning').hidden = !info.random_weights;
  if (!info.plan_loaded) {
    $('policy-kascade').disabled = true;
    $('policy-dense').checked = true;
  }
  renderLayers([]);
}

function addMessage(role, text) {
  const item = document.createElement('li');
  item.className = role;
  item.textContent = text;
  $('messages').append(item);
  item.scrollIntoView({ block: 'end' });
  return item;
}

/** Yields the `data:` payloads of an SSE response body. */
async function* sseData(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end = buffer.indexOf('\n\n');
    while (end >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split('\n')) {
        if (line.startsWith('data: ')) yield line.slice(6);
      }
      end = buffer.indexOf('\n\n');
    }
  }
}

function showUsage(usage) {
  const k = usage.kascade;
  $('stat-prefill').textContent = fmt(k.prefill_tokens_per_s);
  $('stat-decode').textContent = fmt(k.decode_tokens_per_s);
  $('stat-k').textContent = `${fmt(k.effective_k)} / ${fmt(k.context_keys)}`;
  $('stat-tokens').textContent = `${usage.prompt_tokens} + ${usage.completion_tokens}`;
  $('stat-attention').textContent = `${fmt(k.attention_ms)} ms of ${fmt(k.total_ms)} ms`;
  $('stat-anchors-hit').textContent = String(k.anchors_hit);
  const ratio = k.context_keys > 0 ? Math.min(1, k.effective_k / k.context_keys) : 0;
  $('k-bar').style.width = `${(100 * ratio).toFixed(1)}%`;
  renderLayers(k.anchor_layers);
}

async function send(text) {
  const policy = $('policy-kascade').checked ? 'kascade' : 'dense';
  const maxTokens = Number($('max-tokens').value) || 64;
  const temperature = Number($('temperature').value);
  state.history.push({ role: 'user', content: text });
  addMessage('user', text);
  const reply = addMessage('assistant', '');
  showError('');
  $('stat-policy').textContent = policy;
  $('stat-tps').textContent = '…';
  const controller = new AbortController();
  state.controller = controller;
  $('send').disabled = true;
  $('stop').disabled = false;
  let answer = '';
  try {
    const res = await fetch('/v1/chat/completions', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: state.model,
        messages: state.history,
        max_tokens: maxTokens,
        temperature,
        stream: true,
        stream_options: { include_usage: true },
        kascade: { policy },
      }),
      signal: controller.signal,
    });
    if (!res.ok) {
      const body = await res.json().catch(() => ({}));
      throw new Error(body.error?.message ?? `HTTP ${res.status}`);
    }
    let tokens = 0;
    let first = 0;
    const start = performance.now();
    for await (const data of sseData(res.body)) {
      if (data === '[DONE]') break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      if (chunk.usage) {
        showUsage(chunk.usage);
        // Pieces can hold several tokens (or none, mid-character): end on the real count.
        const seconds = (performance.now() - start) / 1000;
        $('stat-tps').textContent = fmt(chunk.usage.completion_tokens / seconds);
      }
      const piece = chunk.choices?.[0]?.delta?.content;
      if (piece) {
        tokens++;
        if (tokens === 1) first = performance.now();
        answer += piece;
        reply.textContent = answer;
        const seconds = (performance.now() - first) / 1000;
        if (tokens > 1 && seconds > 0) $('stat-tps').textContent = fmt((tokens - 1) / seconds);
      }
    }
    state.history.push({ role: 'assistant', content: answer });
  } catch (error) {
    if (error.name === 'AbortError') {
      reply.textContent = `${answer} [stopped]`;
      state.history.push({ role: 'assistant', content: answer });
    } else {
      showError(error.message);
      state.history.pop();
    }
  } finally {
    state.controller = undefined;
    $('send').disabled = false;
    $('stop').disabled = true;
  }
}

$('composer').addEventListener('submit', (event) => {
  event.preventDefault();
  const text = $('prompt').value.trim();
  if (text === '' || state.controller) return;
  $('prompt').value = '';
  void send(text);
});
$('prompt').addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey) {
    event.preventDefault();
    $('composer').requestSubmit();
  }
});
$('stop').addEventListener('click', () => state.controller?.abort());
$('clear').addEventListener('click', () => {
  state.history = [];
  $('messages').replaceChildren();
});

loadModel().catch((error) => showError(`cannot load the model list: ${error.message}`));
