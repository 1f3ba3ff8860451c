from setuptools import find_packages, setup

setup(
    name="omni-avsr",
    version="0.1.0",
    description="Omni-AVSR (unified ASR / VSR / AVSR with elastic compression rates) for Hugging Face Transformers",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["omni_avsr", "omni_avsr.*"]),
    package_data={"omni_avsr.metrics": ["*/*.py"]},
    install_requires=[
        "torch>=2.6",
        "transformers>=5.24,<6",
        "peft>=0.21",
        "accelerate>=1.10",
        "datasets>=4.0",
        "safetensors>=0.4",
        "numpy>=1.26",
        "av>=14",
        "decord>=0.6",
        "soxr>=0.5",
        "soundfile>=0.12",
        "jiwer>=3.0",
        "evaluate>=0.4",
        "tqdm>=4.66",
        # Long recordings: Silero VAD (its model ships in the package) finds the pauses to cut at; pysubs2 writes
        # the SRT / VTT subtitles of `omni-avsr transcribe --subtitles`.
        "silero-vad>=5.1",
        "pysubs2>=1.7",
    ],
    extras_require={
        # Mouth cropping of face videos (omni_avsr.cropping): dlib's face detector and 68-point landmarks, offline.
        "crop": ["dlib-bin>=20.0", "face_recognition_models>=0.3", "opencv-python-headless>=4.8", "scipy>=1.10"],
        "demo": ["espeakng-loader>=0.2", "matplotlib>=3.8", "tensorboard>=2.15", "gguf>=0.10", "librosa>=0.10"],
        # Sharded training engines beyond accelerate's FSDP (recipes/accelerate/deepspeed_zero3.yaml). Not in the default
        # install: DeepSpeed logs its accelerator choice on import.
        "scale": ["deepspeed>=0.16"],
        # The frozen LM in 4-bit / 8-bit (ModelArguments.quantize_language_model); bitsandbytes >= 0.45 also runs on CPU.
        "quantization": ["bitsandbytes>=0.45"],
        # The web page to try a model (`omni-avsr app`, omni_avsr/app.py).
        "app": ["gradio>=5.0"],
        # selenium drives a headless Chromium in the web app's tests.
        "dev": ["pytest>=8", "pytest-xdist>=3.5", "ctranslate2>=4.0", "selenium>=4.20"],
    },
    entry_points={"console_scripts": ["omni-avsr=omni_avsr.cli:main"]},
)
