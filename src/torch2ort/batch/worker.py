"""One shard of a batch job: sources -> predictions -> one Parquet file, written atomically.

Both engines run this same code (the local engine in threads, the Ray engine inside actors), with
the same shards and the same batches inside a shard, so their outputs are identical.

A row's columns: ``row`` (its position in the input), ``source`` (the path or text), ``error``
(null, or why this input failed), then the bundle's results. With a postprocess pipeline the
results are what it adds or replaces (embeddings, probabilities, top-k as ``<name>_label``,
``<name>_index`` and ``<name>_score`` lists; entities and detections as one nested column of records,
``list<struct>``, whose fields the runtime declares); without one, the raw outputs. Tensors become
(nested) lists. Image results that need the image's size (boxes, segmentation maps) are post-processed
row by row. A bad input (a corrupt image, a bad .npy) fails alone: its row has the error, the job goes on.

The job's call options go to every row, as ``Bundle.predict`` takes them. A zero-shot bundle's
``candidate_labels`` make the text tower's rows: the same for every image, so a batch stacks its images
and keeps one copy of the label rows (``SHARED_INPUTS``), and each image gets its ``zero_shot`` records.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from torch2ort.batch.inputs import Inputs
from torch2ort.errors import Torch2OrtError, describe
from torch2ort.runtime.bundle import Bundle
from torch2ort.runtime.processors import structured_results

BASE_COLUMNS = ["row", "source", "error"]
SHARED_INPUTS = ("input_ids", "attention_mask")  # what the candidate_labels step adds: one copy per batch


class ShardWorker:
    """Holds one Bundle (ORT intra-op threads set explicitly: Ray sets OMP_NUM_THREADS=1)."""

    def __init__(self, bundle: str, inputs: Inputs, out: str, batch_size: int, threads: int,
                 providers: list[str] | None = None, options: dict | None = None) -> None:
        from torch2ort.runtime.processors import split_options

        self.bundle = Bundle.load(bundle, providers, intra_op_num_threads=threads)
        self.inputs, self.out, self.batch_size = inputs, Path(out), batch_size
        pre = self.bundle.manifest.get("preprocess", [])
        self.text = bool(pre) and pre[0].get("op") == "tokenize"
        self.pre_options, self.options = split_options(pre, self.bundle.manifest.get("postprocess", []), options or {})
        self.shared = set(SHARED_INPUTS) if any(s.get("op") == "candidate_labels" for s in pre) else set()
        self._types: dict[str, tuple[np.dtype, int]] = {}  # tensor results: dtype and list depth
        self.structured = structured_results(self.bundle.manifest.get("postprocess", []))
        self.schema = self._schema()

    # --- one shard ---------------------------------------------------------------------------------
    def write_shard(self, index: int, start: int, stop: int) -> dict:
        """Predict rows [start, stop) and write ``part-<index>.parquet`` (temp file, then rename)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows: list[dict] = []
        for lo in range(start, stop, self.batch_size):
            rows += self.predict_rows(range(lo, min(lo + self.batch_size, stop)))
        table = pa.Table.from_pylist(rows, schema=self.schema)
        final = self.out / shard_name(index)
        tmp = self.out / f".{final.name}.{os.getpid()}.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, final)
        return {"shard": index, "rows": len(rows), "errors": sum(r["error"] is not None for r in rows)}

    def predict_rows(self, positions: range) -> list[dict]:
        """One batch: row dicts in order; each failing input becomes an error row."""
        sources = [self.inputs.sources[i] for i in positions]
        rows = [{"row": i, "source": printable(s), "error": None} for i, s in zip(positions, sources)]
        feeds: list[dict | None] = [None] * len(rows)
        texts: list[str | None] = [None] * len(rows)
        if self.text:
            for k, src in enumerate(sources):  # a folder's files are read here: their contents are the texts
                try:
                    texts[k] = self.inputs.load(src)
                except Torch2OrtError as exc:
                    rows[k]["error"] = exc.one_line()
            ok = [k for k in range(len(rows)) if texts[k] is not None]
            try:
                if ok:
                    return self._run(rows, [self.bundle.preprocess([texts[k] for k in ok], None, **self.pre_options)],
                                     [ok], texts)
            except Torch2OrtError:
                pass  # find the bad text(s) one by one below
        metas: list[dict] = [{} for _ in rows]  # what preprocessing learnt per input (an image's size)
        for k, src in enumerate(sources):
            if rows[k]["error"] is not None:
                continue
            try:
                feeds[k] = self.bundle.preprocess([texts[k]] if self.text else self.inputs.load(src), metas[k],
                                                  **self.pre_options)
            except Torch2OrtError as exc:
                rows[k]["error"] = exc.one_line()
            except Exception as exc:  # a decoder failing in its own way: still this input's fault
                rows[k]["error"] = f"{src}: {describe(exc)}"
        groups: dict[tuple, list[int]] = {}  # feeds that can be stacked: same names, dtypes, non-batch dims
        for k, f in enumerate(feeds):
            if f is not None:
                groups.setdefault(tuple((n, a.shape[1:], str(a.dtype)) for n, a in sorted(f.items())), []).append(k)
        merged = [{n: feeds[ks[0]][n] if n in self.shared else np.concatenate([feeds[k][n] for k in ks])
                   for n in feeds[ks[0]]} for ks in groups.values()]
        return self._run(rows, merged, list(groups.values()), texts, metas)

    def _run(self, rows: list[dict], feeds: list[dict], members: list[list[int]], texts: list | None = None,
             metas: list[dict] | None = None) -> list[dict]:
        for feed, ks in zip(feeds, members):
            try:
                results = self._results(feed, self.bundle.run(feed), [texts[k] for k in ks] if self.text else None,
                                        [metas[k] for k in ks] if metas else None)
            except Exception as exc:
                if len(ks) > 1:  # isolate the row that fails
                    for k in ks:
                        one = (self._preprocess_one(texts[k]) if self.windowed else self._row(feed, ks.index(k)))
                        if one is None:
                            rows[k]["error"] = describe(exc)
                            continue
                        self._run(rows, [one], [[k]], texts, metas)
                    continue
                rows[ks[0]]["error"] = describe(exc)
                continue
            for j, k in enumerate(ks):
                rows[k].update({name: col[j] for name, col in results.items()})
        return rows

    def _row(self, feed: dict, j: int) -> dict:
        """Row ``j`` of a stacked feed; the shared label rows whole."""
        return {n: a if n in self.shared else a[j:j + 1] for n, a in feed.items()}

    @property
    def windowed(self) -> bool:
        """A tokenize ``stride``: a long text is several feed rows (its windows), so rows are not texts."""
        return self.text and bool(self.bundle.manifest.get("preprocess", [{}])[0].get("stride"))

    def _preprocess_one(self, text: str) -> dict | None:
        try:
            return self.bundle.preprocess([text], None, **self.pre_options)
        except Torch2OrtError:
            return None

    # --- results as columns ------------------------------------------------------------------------
    def _results(self, feed: dict, raw: dict[str, np.ndarray], texts: list[str] | None = None,
                 metas: list[dict] | None = None) -> dict[str, list]:
        """Per-row Python values for every written result (see the module docstring)."""
        n = next(a for name, a in feed.items() if name not in self.shared).shape[0]
        if texts is not None and self.windowed:  # a text's windows are several rows: per-text results only
            return self._per_text(feed, raw, texts)
        if metas and any(metas) and n > 1:  # an image's size is its own: post-process row by row
            rows = [self._results(self._row(feed, j), {k: v[j:j + 1] for k, v in raw.items()}, None, [metas[j]])
                    for j in range(n)]
            return {k: [v for r in rows for v in r[k]] for k in rows[0] if all(k in r for r in rows)}
        post = self.bundle.postprocess(feed, raw, texts, metas[0] if metas else None, **self.options)
        if self.bundle.manifest.get("postprocess"):
            post = {k: v for k, v in post.items() if k not in raw or v is not raw[k]}
        cols: dict[str, list] = {}
        for name, value in post.items():
            if isinstance(value, np.ndarray) and value.dtype != object and value.ndim and value.shape[0] == n:
                cols[name] = value.tolist()
                self._types[name] = (value.dtype, value.ndim - 1)
            elif isinstance(value, list) and len(value) == n:
                if name in self.structured:  # records per row (entities, detections): one nested column
                    cols[name] = list(value)
                elif value and isinstance(value[0], list) and value[0] and isinstance(value[0][0], dict):
                    for key in value[0][0]:
                        cols[f"{name}_{key}"] = [[d[key] for d in row] for row in value]
                else:
                    cols[name] = list(value)
        return cols

    def _per_text(self, feed: dict, raw: dict[str, np.ndarray], texts: list[str]) -> dict[str, list]:
        """The results with one entry per text (entities merged over a text's windows), as columns."""
        post = self.bundle.postprocess(feed, raw, texts, **self.options)
        return {name: list(value) for name, value in post.items()
                if name not in raw and isinstance(value, list) and len(value) == len(texts)}

    def _schema(self):
        """The Arrow schema, from one warm-up prediction, so every shard (and error rows) agree."""
        import pyarrow as pa

        feed = {}
        for t in self.bundle.inputs:
            shape = [d if isinstance(d, int) and d >= 0 else 1 for d in t["shape"]]
            feed[t["name"]] = np.zeros(shape, dtype=t["dtype"]) if t["dtype"] != "bool" else np.ones(shape, bool)
        if self.text:
            feed = self.bundle.preprocess(["warm up"], None, **self.pre_options)
        fields = [pa.field("row", pa.int64()), pa.field("source", pa.string()), pa.field("error", pa.string())]
        warm = self._results(feed, self.bundle.run(feed), ["warm up"] if self.text else None)
        for name in self.structured:
            warm.setdefault(name, [[]])
        for name, col in warm.items():
            if name in BASE_COLUMNS:
                continue
            if name in self.structured:
                fields.append(pa.field(name, pa.list_(_arrow(self.structured[name]))))
                continue
            if name in self._types:
                dtype, depth = self._types[name]
                kind = pa.from_numpy_dtype(dtype)
                for _ in range(depth):
                    kind = pa.list_(kind)
            else:  # lists of labels, scores, indices; an empty list at warm-up would say "null"
                kind = _no_nulls(pa.array(col[:1]).type)
            fields.append(pa.field(name, kind))
        return pa.schema(fields)


def _arrow(fields: dict):
    """A record's declared keys and types (runtime ``structured_results``) as an Arrow struct."""
    import pyarrow as pa

    kinds = {"str": pa.string(), "float": pa.float64(), "int": pa.int64()}
    return pa.struct([pa.field(k, _arrow(v) if isinstance(v, dict) else kinds[v]) for k, v in fields.items()])


def _no_nulls(kind):
    """``null`` (what Arrow infers from an empty list) read as string: labels are the lists that can be empty."""
    import pyarrow as pa

    if pa.types.is_null(kind):
        return pa.string()
    if pa.types.is_list(kind):
        return pa.list_(_no_nulls(kind.value_type))
    return kind


def printable(source: str) -> str:
    """A source as Parquet can store it: a file name that is not UTF-8 (its bytes kept by Python as
    surrogates) shows its odd bytes as \\xNN instead of failing the whole shard."""
    return source.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def shard_name(index: int) -> str:
    return f"part-{index:05d}.parquet"
