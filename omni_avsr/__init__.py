"""Omni-AVSR for Hugging Face Transformers.

Importing the package registers the `omni_avsr` model type with `AutoConfig`, `AutoModel`,
`AutoModelForSpeechSeq2Seq` and `AutoProcessor`, its AV-HuBERT video encoder with `AutoModel` and `AutoModelForCTC`,
and the `automatic-speech-recognition` and `audio-visual-speech-recognition` pipelines.
"""

from transformers import AutoConfig, AutoModel, AutoModelForCTC, AutoModelForSpeechSeq2Seq, AutoProcessor

from .configuration_avhubert import AVHubertVideoConfig
from .configuration_omni_avsr import TASKS, OmniAVSRConfig
from .media import Clip, load_audio, load_clip
from .modeling_avhubert import AVHubertForCTC, AVHubertVideoModel
from .modeling_omni_avsr import OmniAVSRForConditionalGeneration, OmniAVSRModel
from .pipeline_omni_avsr import (
    AudioVisualSpeechRecognitionPipeline,
    OmniAVSRSpeechRecognitionPipeline,
    register_pipelines,
)
from .processing_omni_avsr import OmniAVSRProcessor
from .training.matryoshka import OmniAVSROutput


AutoConfig.register("avhubert_video", AVHubertVideoConfig, exist_ok=True)
AutoConfig.register("omni_avsr", OmniAVSRConfig, exist_ok=True)
AutoModel.register(AVHubertVideoConfig, AVHubertVideoModel, exist_ok=True)
AutoModelForCTC.register(AVHubertVideoConfig, AVHubertForCTC, exist_ok=True)
AutoModel.register(OmniAVSRConfig, OmniAVSRForConditionalGeneration, exist_ok=True)
AutoModelForSpeechSeq2Seq.register(OmniAVSRConfig, OmniAVSRForConditionalGeneration, exist_ok=True)
AutoProcessor.register(OmniAVSRConfig, OmniAVSRProcessor, exist_ok=True)
OmniAVSRConfig.register_for_auto_class()
OmniAVSRProcessor.register_for_auto_class()
OmniAVSRForConditionalGeneration.register_for_auto_class("AutoModel")
register_pipelines()

__all__ = [
    "TASKS",
    "Clip",
    "load_audio",
    "load_clip",
    "AudioVisualSpeechRecognitionPipeline",
    "AVHubertForCTC",
    "AVHubertVideoConfig",
    "AVHubertVideoModel",
    "OmniAVSRConfig",
    "OmniAVSRForConditionalGeneration",
    "OmniAVSRModel",
    "OmniAVSROutput",
    "OmniAVSRProcessor",
    "OmniAVSRSpeechRecognitionPipeline",
]
