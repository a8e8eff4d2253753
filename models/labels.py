"""Label sets per model; the order is the order of the model's output probabilities."""

from __future__ import annotations

SENTIMENT = ["negative", "neutral", "positive"]
TOPIC = [
    "Analyst Update", "Fed | Central Banks", "Company | Product News", "Treasuries | Corporate Debt", "Dividend",
    "Earnings", "Energy | Oil", "Financials", "Currencies", "General News | Opinion", "Gold | Metals | Materials",
    "IPO", "Legal | Regulation", "M&A | Investments", "Macro", "Markets", "Politics", "Personnel Change",
    "Stock Commentary", "Stock Movement",
]
LABELS: dict[str, list[str]] = {"sentiment": SENTIMENT, "topic": TOPIC}
