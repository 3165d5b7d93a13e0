"""Data automation: text repair, duplicates, PII, label noise, auto-labelling, augmentation."""
