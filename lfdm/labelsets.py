"""The action labels of the paper's data sets, in class-index order, spelled exactly as the authors embedded them.

These strings are the BERT inputs of the released models (`python -m lfdm embed-labels --labels mug`), so their
spelling and case matter. Data-set presets and the label encoders take their lists from here.
"""

from __future__ import annotations

MUG_LABELS = ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")

# UTD-MHAD: index = N - 1 for folder `aN_sS_tT`.
MHAD_LABELS = (
    "right arm swipe to the left",
    "right arm swipe to the right",
    "right hand wave",
    "two hand front clap",
    "right arm throw",
    "cross arms in the chest",
    "basketball shooting",
    "draw x",
    "draw circle clockwise",
    "draw circle counter clockwise",
    "draw triangle",
    "right hand bowling",
    "front boxing",
    "baseball swing from right",
    "tennis forehand swing",
    "two arms curl",
    "tennis serve",
    "two hand push",
    "knock on door",
    "hand catch",
    "pick up and throw",
    "jogging",
    "walking",
    "sit to stand",
    "stand to sit",
    "forward lunge (left foot forward)",
    "squat",
)

# NATOPS: index = gesture number - 1 (characters 1:3 of a `gGGsSS...` name).
NATOPS_LABELS = (
    "I Have Command",
    "All Clear",
    "Not Clear",
    "Spread Wings",
    "Fold Wings",
    "Lock Wings",
    "Up Hook",
    "Down Hook",
    "Remove Tiedowns",
    "Remove Chocks",
    "Insert Chocks",
    "Move Ahead",
    "Turn Left",
    "Turn Right",
    "Next Marshaller",
    "Slow Down",
    "Stop",
    "Nosegear Steering",
    "Hot Brakes",
    "Brakes On",
    "Brakes Off",
    "Install Tiedowns",
    "Fire",
    "Cut Engine",
)

LABEL_SETS: dict[str, tuple[str, ...]] = {"mug": MUG_LABELS, "mhad": MHAD_LABELS, "natops": NATOPS_LABELS}


def label_set(name: str) -> tuple[str, ...]:
    """The labels of a preset ("mug", "mhad", "natops"); ValueError naming the presets otherwise."""
    if name not in LABEL_SETS:
        raise ValueError(f"unknown label set {name!r}; choose one of {sorted(LABEL_SETS)}.")
    return LABEL_SETS[name]
