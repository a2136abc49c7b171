"""Synthetic but varied agent memories and paraphrased queries for benchmarks."""

from __future__ import annotations

import random

__all__ = ["memory_texts", "query_for"]

_SUBJECTS = ["the user", "the customer", "our CFO", "the on-call engineer", "Alice", "Bob",
             "the data team", "the planner agent", "the support bot", "the legal team",
             "Priya", "Marco", "the mobile app", "the billing service", "the research agent"]
_VERBS = ["prefers", "asked about", "rejected", "approved", "reported a bug in",
          "wants a summary of", "scheduled a review of", "is worried about", "migrated",
          "needs access to", "complained about", "praised", "deprecated", "benchmarked"]
_OBJECTS = ["dark mode", "the quarterly revenue report", "the Postgres upgrade",
            "vector search latency", "the onboarding flow", "GDPR data exports",
            "the Kubernetes cluster", "invoice PDF rendering", "the pricing page",
            "API rate limits", "the Berlin office move", "SSO with Okta", "nightly backups",
            "the recommendation model", "churn in the enterprise tier", "the Slack integration",
            "flaky CI on main", "the Q3 hiring plan", "latency in eu-west-1", "the NATS cluster"]
_WHEN = ["on Monday", "last week", "in the standup", "during the incident", "in Q3 2026",
         "before the launch", "after the outage", "at 09:30 UTC", "yesterday", "in the retro"]
_DETAIL = ["ticket {n}", "a budget of {n} EUR", "{n} affected accounts", "p99 of {n} ms",
           "{n} open issues", "version 2.{n}", "a deadline in {n} days", "priority {n}"]


def memory_texts(count: int, seed: int = 7) -> list[str]:
    """``count`` distinct memory sentences (a running number keeps every text unique)."""
    rng = random.Random(seed)
    texts = []
    for i in range(count):
        detail = rng.choice(_DETAIL).format(n=rng.randint(2, 9999))
        texts.append(f"{rng.choice(_SUBJECTS).capitalize()} {rng.choice(_VERBS)} "
                     f"{rng.choice(_OBJECTS)} {rng.choice(_WHEN)}, with {detail} (#{i}).")
    return texts


def query_for(text: str, rng: random.Random) -> str:
    """A natural-language query sharing some words with ``text`` (not an exact copy)."""
    words = [w.strip(",.()#") for w in text.split() if len(w) > 3]
    rng.shuffle(words)
    return "what do we know about " + " ".join(words[: max(2, len(words) // 3)])
