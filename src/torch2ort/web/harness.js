// torch2ort's browser harness: runs an ONNX model with onnxruntime-web (WASM) for the web runner.
// Tensors travel as raw bytes over HTTP (GET /tensor/<id>, PUT /result/<id>/<name>), never as JSON numbers.
"use strict";

const TYPED = {
  float32: [Float32Array, "float32"], float16: [Uint16Array, "float16"], int64: [BigInt64Array, "int64"],
  int32: [Int32Array, "int32"], uint8: [Uint8Array, "uint8"], int8: [Int8Array, "int8"], bool: [Uint8Array, "bool"],
  float64: [Float64Array, "float64"],
};

const state = { session: null, error: null };

async function init(opts) {
  ort.env.wasm.wasmPaths = "/ort/";
  ort.env.wasm.numThreads = opts.threads;
  ort.env.wasm.proxy = false;
  ort.env.logLevel = "error";
  const info = {
    version: ort.env.versions ? (ort.env.versions.web || ort.env.versions.common) : "unknown",
    crossOriginIsolated: self.crossOriginIsolated === true,
    requestedThreads: opts.threads,
  };
  try {
    const bytes = new Uint8Array(await (await fetch("/model.onnx")).arrayBuffer());
    state.session = await ort.InferenceSession.create(bytes, {
      executionProviders: ["wasm"], graphOptimizationLevel: opts.optLevel || "all",
    });
    info.inputs = state.session.inputNames;
    info.outputs = state.session.outputNames;
  } catch (e) {
    state.error = String(e && e.message ? e.message : e);
    info.error = state.error;
  }
  // ORT falls back to one thread when the page is not cross-origin isolated (no SharedArrayBuffer).
  info.threads = info.crossOriginIsolated ? ort.env.wasm.numThreads : 1;
  info.threadsActive = info.crossOriginIsolated && ort.env.wasm.numThreads > 1;
  return info;
}

async function feedFor(id, inputs) {
  const feeds = {};
  for (const meta of inputs) {
    const buf = await (await fetch(`/tensor/${id}/${encodeURIComponent(meta.name)}`)).arrayBuffer();
    const [Typed, type] = TYPED[meta.dtype];
    feeds[meta.name] = new ort.Tensor(type, new Typed(buf), meta.shape);
  }
  return feeds;
}

function dtypeOf(tensor) {
  return tensor.type === "float16" ? "float16" : tensor.type;
}

async function run(id, inputs) {
  if (state.error) throw new Error(state.error);
  const feeds = await feedFor(id, inputs);
  const outs = await state.session.run(feeds);
  const meta = [];
  for (const name of state.session.outputNames) {
    const t = outs[name];
    const data = t.data;
    const body = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    await fetch(`/result/${id}/${encodeURIComponent(name)}`, { method: "PUT", body: body.slice() });
    meta.push({ name, dtype: dtypeOf(t), shape: Array.from(t.dims) });
  }
  return meta;
}

// Latency measured inside the page: performance.now() around session.run, feeds built once.
async function bench(id, inputs, warmup, iters, seconds) {
  if (state.error) throw new Error(state.error);
  const feeds = await feedFor(id, inputs);
  for (let i = 0; i < warmup; i++) await state.session.run(feeds);
  const samples = [];
  const start = performance.now();
  while (samples.length < iters || (seconds > 0 && performance.now() - start < seconds * 1000)) {
    const t0 = performance.now();
    await state.session.run(feeds);
    samples.push(performance.now() - t0);
    if (seconds > 0 && samples.length >= iters && performance.now() - start >= seconds * 1000) break;
  }
  return samples;
}

self.t2o = { init, run, bench };
