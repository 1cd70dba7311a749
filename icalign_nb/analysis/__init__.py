"""Analysis: win rates with bootstrap intervals over prompts, paired differences, breakdowns, judge
agreement, the paper's table, and tables as text, JSON or CSV. No model is loaded here."""
