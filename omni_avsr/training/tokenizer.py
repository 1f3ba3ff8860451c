"""A small BPE tokenizer trained on transcripts, for language models trained from scratch (no pretrained vocab)."""

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from ..configuration_omni_avsr import DEFAULT_TASK_PROMPTS
from ..processing_omni_avsr import MARKER_TOKENS


SPECIAL_TOKENS = ("<s>", "</s>", "<unk>", "<pad>", *MARKER_TOKENS)


def train_bpe_tokenizer(
    texts: list[str], vocab_size: int = 256, prompts: list[str] = tuple(DEFAULT_TASK_PROMPTS.values())
) -> PreTrainedTokenizerFast:
    """Llama-style BPE (SentencePiece-like word boundaries, BOS added when tokenising) fitted to `texts`.

    The task `prompts` are weighted as if they were as frequent as the commonest transcript words, so each prompt
    word gets its own token: otherwise every LM row would carry its prompt spelled out letter by letter.
    """
    if not texts:
        raise ValueError("Cannot train a tokenizer without transcripts.")
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False)
    prompt_weight = max(1, len(texts) // 2)
    tokenizer.train_from_iterator(list(texts) + list(prompts) * prompt_weight, trainer=trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tokenizer.token_to_id("<s>"))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        additional_special_tokens=list(MARKER_TOKENS),
    )
