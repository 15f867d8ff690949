"""A reward that varies between samples of a random tiny model, so trainer tests get gradients."""


def digits_reward(text: str, ground_truth, extra: dict) -> dict:
    score = sum(ch.isdigit() for ch in text) / max(1, len(text))
    return {"score": score, "acc": float(score > 0.1)}
