"""Analysis: win rates with bootstrap intervals over prompts, paired differences, head to head,
breakdowns, judge agreement and the fitted judge's validation, leakage, the paper's table, and tables
as text, JSON or CSV. Only judging for agreement or validation loads a model (the judges' encoder)."""
