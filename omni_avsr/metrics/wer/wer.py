"""Word error rate as the Omni-AVSR paper reports it, as an `evaluate` metric: `evaluate.load(<this folder>)`.

Transcripts are normalised first (lowercased; letters, digits and apostrophes kept; spaces collapsed) and the WER is
corpus-level: total word edits over total reference words, in percent. jiwer aligns the words. The hub's `wer`
metric needs the network to load; this one is a local folder, so it loads offline.
"""

import re

import datasets
import evaluate
import jiwer


_DESCRIPTION = "Corpus word error rate (%) over normalised transcripts, as in the Omni-AVSR paper's tables."
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): transcripts to score.
    references (`list[str]`): reference transcripts, one per prediction.
Returns:
    wer (`float`): total substitutions + deletions + insertions over the number of reference words, in percent.
    num_words (`int`): reference words after normalisation.
    substitutions, deletions, insertions (`int`): the word edits.
"""
_CITATION = """@article{cappellazzo2025omniavsr,
  title={Omni-AVSR: Towards Unified Multimodal Speech Recognition with Large Language Models},
  author={Cappellazzo, Umberto and Liu, Xubo and Ma, Pingchuan and Petridis, Stavros and Pantic, Maja},
  journal={arXiv preprint arXiv:2511.07253}, year={2025}
}"""


def normalize_transcript(text: str) -> str:
    """Lowercase, keep letters, digits and apostrophes, collapse spaces: WER over words as in the paper."""
    return " ".join(re.sub(r"[^\w' ]+", " ", text.lower()).split())


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Wer(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string", id="sequence"), "references": datasets.Value("string", id="sequence")}
            ),
            reference_urls=["https://arxiv.org/abs/2511.07253", "https://github.com/jitsi/jiwer"],
        )

    def _compute(self, predictions, references):
        if len(predictions) != len(references):
            raise ValueError(f"Got {len(predictions)} predictions for {len(references)} references; expected one each.")
        references = [normalize_transcript(text) for text in references]
        predictions = [normalize_transcript(text) for text in predictions]
        num_words = sum(len(text.split()) for text in references)
        if num_words == 0:
            raise ValueError("The references hold no words: a WER needs at least one reference word.")
        edits = jiwer.process_words(references, predictions)
        total = edits.substitutions + edits.deletions + edits.insertions
        return {
            "wer": 100.0 * total / num_words,
            "num_words": num_words,
            "substitutions": edits.substitutions,
            "deletions": edits.deletions,
            "insertions": edits.insertions,
        }
