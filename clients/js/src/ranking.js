// What both classifiers do with logits (docs/bundle-spec.md, section 4, "Output").

/** Softmax of one row of logits, in float64. */
export function softmax(logits) {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  const e = Array.from(logits, (v) => Math.exp(v - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / sum);
}

/** The k best [label, probability] pairs, ties in index order; a class without a label is named by its index. */
export function ranked(probabilities, labels, k) {
  const order = probabilities.map((p, i) => i).sort((a, b) => probabilities[b] - probabilities[a] || a - b);
  return order.slice(0, Math.min(k ?? order.length, order.length)).map((i) => [labels[i] ?? String(i), probabilities[i]]);
}
