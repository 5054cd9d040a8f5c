FROM condaforge/miniforge3:latest
LABEL io.github.snakemake.containerized="true"
LABEL io.github.snakemake.conda_env_hash="0baaa1aae94a2a45c7637044afe259287ae4bdae327c0c65cefdfc091efbbb50"
# Conda environment:
#   source: envs/data.yaml
#   prefix: /conda-envs/1799de6a9e98a940fd60588bd78678fe
#   # Data, tables and figures: no torch.
#   # Generated from requirements.lock by `python -m hideseek.condaenvs`; do not edit.
#   channels:
#     - conda-forge
#     - nodefaults
#   dependencies:
#     - python=3.11
#     - pip
#     - pip:
#         - numpy==2.4.6
#         - pandas==3.1.1
#         - scipy==1.17.1
#         - scikit-learn==1.9.1
#         - opencv-python-headless==5.0.0.93
#         - matplotlib==3.11.2
#         - tqdm==4.70.1
#         - tabulate==0.10.0
#         - pyyaml==6.0.4
#         - jsonschema==4.26.0
#         - pydicom==3.0.2
#         - pylibjpeg==2.1.0
#         - pylibjpeg-libjpeg==2.5.0
#         - pylibjpeg-openjpeg==2.6.0
#         - pylibjpeg-rle==2.2.0
#         - statsmodels==0.15.0
RUN mkdir -p /conda-envs/1799de6a9e98a940fd60588bd78678fe
COPY envs/data.yaml /conda-envs/1799de6a9e98a940fd60588bd78678fe/environment.yaml
# Conda environment:
#   source: envs/torch.yaml
#   prefix: /conda-envs/2eda327e9009af70d912d734d6244e84
#   # PyTorch stages: U-Net, classifiers, Grad-CAM. torch/torchvision are the lock's builds; on a CUDA node they use the GPU.
#   # Generated from requirements.lock by `python -m hideseek.condaenvs`; do not edit.
#   channels:
#     - conda-forge
#     - nodefaults
#   dependencies:
#     - python=3.11
#     - pip
#     - pip:
#         - torch==2.14.1
#         - torchvision==0.29.1
#         - monai==1.6.1
#         - kornia==0.9.0
#         - grad-cam==1.5.7
#         - numpy==2.4.6
#         - pandas==3.1.1
#         - scipy==1.17.1
#         - scikit-learn==1.9.1
#         - opencv-python-headless==5.0.0.93
#         - matplotlib==3.11.2
#         - tqdm==4.70.1
#         - tabulate==0.10.0
#         - pyyaml==6.0.4
#         - jsonschema==4.26.0
#         - pydicom==3.0.2
#         - pylibjpeg==2.1.0
#         - pylibjpeg-libjpeg==2.5.0
#         - pylibjpeg-openjpeg==2.6.0
#         - pylibjpeg-rle==2.2.0
#         - statsmodels==0.15.0
#         - onnx==1.23.2
#         - onnxruntime==1.32.0
#         - onnx2torch==1.5.15
#         - timm==1.0.31
#         - torchxrayvision==1.5.7
RUN mkdir -p /conda-envs/2eda327e9009af70d912d734d6244e84
COPY envs/torch.yaml /conda-envs/2eda327e9009af70d912d734d6244e84/environment.yaml

RUN conda env create --prefix /conda-envs/1799de6a9e98a940fd60588bd78678fe --file /conda-envs/1799de6a9e98a940fd60588bd78678fe/environment.yaml && \
    conda env create --prefix /conda-envs/2eda327e9009af70d912d734d6244e84 --file /conda-envs/2eda327e9009af70d912d734d6244e84/environment.yaml && \
    conda clean --all -y
