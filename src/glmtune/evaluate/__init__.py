"""Scoring generated responses against references: BLEU-4 and ROUGE-1/2/L as THUDM's ChatGLM scripts do."""
