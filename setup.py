"""simclr_mura: label-efficient abnormality detection on MURA with SimCLR (Keras 3)."""
from setuptools import find_packages, setup

setup(
    name="simclr_mura",
    version="0.1.0",
    description="SimCLR (Keras 3 port of google-research/simclr) for MURA musculoskeletal radiographs",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["simclr_mura", "simclr_mura.*"]),
    package_data={"simclr_mura": ["presets/*.cfg"]},  # the study's flagfiles, found through importlib.resources
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "tensorflow-datasets>=4.9.9,<4.10",
        "keras>=3.10,<4",
        "tensorboard>=2.19,<3",
        "importlib_resources>=6",  # TFDS 4.9.10 imports it without declaring it (upstream bug)
        "absl-py>=2.1,<3",
        "numpy>=1.26,<3",
        "scikit-learn>=1.5,<2",
        "pandas>=2.2,<4",
        "matplotlib>=3.8,<4",
        "pillow>=10,<13",
        "tqdm>=4.66",
    ],
    extras_require={
        # dill: tfds.testing imports it; pytest-xdist: the suite runs in two processes (pytest.ini). pytest < 9.2:
        # with 9.2's structured node ids, xdist 3.8's --dist loadgroup silently stops grouping (pytest-xdist issue
        # #1386), and the study tests' shared fixture would be built once per process.
        "test": ["pytest>=8,<9.2", "pytest-timeout>=2.3", "pytest-xdist>=3.5", "dill>=0.3.8"],
        "gpu": ["tensorflow[and-cuda]>=2.21,<2.22"],
    },
    entry_points={
        "console_scripts": [
            "simclr-mura=simclr_mura.main:run",
            "simclr-mura-prepare=simclr_mura.prepare:run",
            "simclr-mura-explore=simclr_mura.explore:run",
            "simclr-mura-predict=simclr_mura.predict:run",
            "simclr-mura-report=simclr_mura.report:run",
            "simclr-mura-study=simclr_mura.study.cli:run",
            "simclr-mura-benchmark=simclr_mura.benchmark:run",
            "simclr-mura-synthetic-findings=simclr_mura.synthetic_findings:run",
        ]
    },
)
