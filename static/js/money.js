// Dollars and token totals as the reader sees them; conversations/usage.py's usd_short and
// conversations/live/frames.py's totals_text write the same on the server.

// "free" for $0, cents from a dollar up, two significant digits under it ("$0.00042"), so a
// small amount never reads "$0.0000". `usd` is a decimal string (frames carry dollars as
// strings, which JSON numbers would round).
export function usdShort(usd) {
  const value = Number(usd);
  if (!(value > 0)) return "free";
  if (value >= 1) return `$${value.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
  const decimals = Math.max(2, 1 - Math.floor(Math.log10(value)));
  return `$${value.toFixed(decimals)}`;
}

// A conversation's answers in all: "12,345 tokens · $0.013"; "" before its first answer.
export function totalsText(totals) {
  if (!totals?.tokens) return "";
  const cost = totals.cost_usd == null ? "" : ` · ${usdShort(totals.cost_usd)}`;
  return `${totals.tokens.toLocaleString("en-US")} tokens${cost}`;
}
