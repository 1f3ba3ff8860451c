"""Configuration of the AV-HuBERT video encoder (the lip-reading path used by Omni-AVSR)."""

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig


@strict
class AVHubertVideoConfig(PreTrainedConfig):
    r"""
    Configuration of [`AVHubertVideoModel`]: AV-HuBERT's video path (ResNet-18 lip front-end, feature fusion and a
    pre-LayerNorm wav2vec2-style transformer). The defaults are AV-HuBERT Large (≈324.5 M parameters).

    Transformer field names follow [`Wav2Vec2Config`] because the transformer *is* `Wav2Vec2EncoderStableLayerNorm`.

    Args:
        hidden_size (`int`, defaults to 1024): width of the transformer (fairseq `encoder_embed_dim`).
        num_hidden_layers (`int`, defaults to 24): transformer layers.
        num_attention_heads (`int`, defaults to 16): attention heads.
        intermediate_size (`int`, defaults to 4096): feed-forward width.
        hidden_act (`str`, defaults to `"gelu"`): feed-forward activation.
        hidden_dropout (`float`, defaults to 0.1): dropout on residual branches.
        attention_dropout (`float`, defaults to 0.1): dropout on attention probabilities.
        activation_dropout (`float`, defaults to 0.0): dropout after the feed-forward activation.
        feat_proj_dropout (`float`, defaults to 0.1): dropout after the fused-feature projection (fairseq `dropout_input`).
        layerdrop (`float`, defaults to 0.05): probability of skipping a transformer layer in training.
        layer_norm_eps (`float`, defaults to 1e-5): epsilon of every LayerNorm.
        num_conv_pos_embeddings (`int`, defaults to 128): kernel of the convolutional positional embedding.
        num_conv_pos_embedding_groups (`int`, defaults to 16): groups of that convolution.
        feat_extract_activation (`str`, defaults to `"gelu"`): activation of the positional convolution.
        frontend_channels (`int`, defaults to 64): output channels of the 3D convolution stem.
        frontend_spatial_stride (`int`, defaults to 2): stride of the 3D stem over height and width (AV-HuBERT: 2).
            Every later layer runs on the stem's output, so 4 makes a from-scratch lip reader about 3× cheaper per
            frame (a quarter of the pixels); pretrained AV-HuBERT weights were trained with 2.
        frontend_input_pooling (`int`, defaults to 1): average-pools each crop by this factor over height and width
            before the stem (2: an 88×88 crop is read at 44×44). With stride 4 as well, the trunk runs on a quarter of
            the pixels again: for a lip reader of the demo's size a 2.4× cheaper front-end and 1.3× cheaper training
            steps (data loading and the transformer stay), at the same loss per step. AV-HuBERT reads the full crop.
        resnet_channels (`list[int]`, defaults to `[64, 128, 256, 512]`): widths of the four ResNet-18 stages.
        resnet_blocks_per_stage (`int`, defaults to 2): basic blocks per stage (2 = ResNet-18).
        modality_fuse (`str`, defaults to `"concat"`): how AV-HuBERT fuses audio and video features. With `"concat"`
            the (absent) audio half is zeros, then LayerNorm over both halves and a projection back to `hidden_size`;
            with `"add"` the video features are used as they are.
        initializer_range (`float`, defaults to 0.02): std of the normal initialiser of linear layers.
        vocab_size (`int`, *optional*): output vocabulary of [`AVHubertForCTC`]'s head; the encoder does not use it.
        pad_token_id (`int`, *optional*): the CTC blank of [`AVHubertForCTC`] (the tokenizer's pad token, as in
            [`Wav2Vec2ForCTC`]).
        eos_token_id (`int`, *optional*): dropped from CTC targets (the Omni-AVSR labels end with EOS).
        final_dropout (`float`, defaults to 0.1): dropout before the CTC head.
        ctc_loss_reduction (`str`, defaults to `"mean"`): reduction of the CTC loss (`"mean"` divides each clip's loss
            by its target length).
        ctc_zero_infinity (`bool`, defaults to `True`): zero the loss of clips too short for their transcript.
    """

    model_type = "avhubert_video"

    hidden_size: int = 1024
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    intermediate_size: int = 4096
    hidden_act: str = "gelu"
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    feat_proj_dropout: float = 0.1
    layerdrop: float = 0.05
    layer_norm_eps: float = 1e-5
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    feat_extract_activation: str = "gelu"
    frontend_channels: int = 64
    frontend_spatial_stride: int = 2
    frontend_input_pooling: int = 1
    resnet_channels: list[int] | tuple[int, ...] = (64, 128, 256, 512)
    resnet_blocks_per_stage: int = 2
    modality_fuse: str = "concat"
    initializer_range: float = 0.02
    vocab_size: int | None = None
    pad_token_id: int | None = None
    eos_token_id: int | None = None
    final_dropout: float = 0.1
    ctc_loss_reduction: str = "mean"
    ctc_zero_infinity: bool = True

    def __post_init__(self, **kwargs):
        self.resnet_channels = list(self.resnet_channels)
        super().__post_init__(**kwargs)

    def validate_architecture(self):
        """Part of `@strict`-powered validation: reject shapes the video path cannot build."""
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"AVHubertVideoConfig: hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads "
                f"({self.num_attention_heads})."
            )
        if self.hidden_size % self.num_conv_pos_embedding_groups != 0:
            raise ValueError(
                f"AVHubertVideoConfig: hidden_size ({self.hidden_size}) must be a multiple of "
                f"num_conv_pos_embedding_groups ({self.num_conv_pos_embedding_groups})."
            )
        for name in ("frontend_spatial_stride", "frontend_input_pooling"):
            if getattr(self, name) < 1:
                raise ValueError(f"AVHubertVideoConfig: {name} must be a positive integer, got {getattr(self, name)}.")
        if self.modality_fuse not in ("concat", "add"):
            raise ValueError(f"AVHubertVideoConfig: modality_fuse must be 'concat' or 'add', got {self.modality_fuse!r}.")
        if len(self.resnet_channels) != 4:
            raise ValueError(
                f"AVHubertVideoConfig: resnet_channels needs the widths of 4 stages, got {list(self.resnet_channels)}."
            )


__all__ = ["AVHubertVideoConfig"]
