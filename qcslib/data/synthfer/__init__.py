"""SynthFER: a procedural facial-expression dataset, hard in the ways real FER is hard.

Each image is a cartoon face drawn from FACS action units (AUs). A class is a prototype set of AUs
(``PROTOTYPES``) whose intensities vary per image and per person; weak AUs outside the prototype,
dropped prototype AUs and low intensities make classes overlap (fear/surprise, anger/disgust,
sad/neutral). Identities (face shape, skin, eyes, nose, hair, beard, glasses) are disjoint between
the train, val and test splits. Nuisances: pose (rotation, scale, shift), lighting gradient, blur,
noise, occluders (a hand or a bar) and background clutter; the colour saturation (1: as drawn, 0: grey).
Train and val labels carry label noise.

*Domains* (``DOMAINS``, ``domain_settings``) each shift one factor of the whole dataset (train, val and test
alike): other identities, strong lighting, large poses, frequent occluders, or greyscale images (which also
hide the background hue), all with the same classes.
A model trained on one domain and scored on another's test split measures a cross-domain drop, as training on
RAF-DB and testing on FERPlus does.

The *bias attribute* is the background hue, one hue per class. In train it is the true class's hue
with probability ``bias_strength`` and a uniformly random hue otherwise, so
``P(aligned) = bias_strength + (1 - bias_strength) / classes``; in test it is always random. This is
the unlabelled redundant feature that the QCS paper sets out to remove.

The *val* split is what a held-out part of a real training set is: other identities, drawn like train
(the same label noise and the same background bias). Choosing a checkpoint on it uses nothing of test,
and, as with real data, the shortcut is as present there as in train. Test labels are clean.

The defaults were chosen so that a tiny baseline trained briefly ends far from saturation, and so that the
background shortcut visibly costs accuracy on bias-conflicting test images as ``bias_strength`` rises; that
calibration was measured on an older generator (benchmarks/RESULTS.md) and notebooks 01 and 04 report where the
current one stands.

Every image is a function of ``(settings, image index)`` alone: the labels, attributes and label noise
come from one plan RNG, identities from ``SeedSequence([seed, 1, identity])`` and each image from
``SeedSequence([seed, 2, index])``, so the output does not depend on the number of workers.

The modules: ``settings`` (the knobs, classes, AU table, the plan and each image's AUs), ``face`` (a person
and the face in face units), ``render`` (one posed, lit and noisy image and its mask) and ``io``
(:func:`generate`: images, masks, list files, meta.csv, settings.json and the cache check); ``video`` renders
clips of one identity moving through expressions, with each frame's truth (``python -m qcslib synthfer-video``).
"""
from .face import Identity, sample_identity
from .io import generate
from .render import render
from .settings import (AUS, CLASSES, DOMAINS, PROTOTYPES, VERSION, Record, SynthFERSettings, domain_settings, plan,
                       sample_aus)

__all__ = ["AUS", "CLASSES", "DOMAINS", "PROTOTYPES", "VERSION", "SynthFERSettings", "Identity", "Record",
           "domain_settings", "generate", "plan", "sample_identity", "sample_aus", "render"]
