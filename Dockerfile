# BERT pretraining with LAMB: `docker build -t bert-lamb .`, then
#   docker run --rm -v $PWD/runs:/app/runs bert-lamb \
#     --gin_file=configs/bert_lamb.gin --model_dir=runs/bert_lamb
# On a Cloud TPU VM add --privileged --net=host and pass --strategy=tpu
# --tpu=local (or the TPU name); on GPU hosts use a CUDA base image, see README.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt
COPY . .

# Data is built once under /data on first use; mount a volume to keep it
# (a later --data_dir flag overrides this one).
ENTRYPOINT ["python", "-m", "trainer.main", "--data_dir=/data"]
CMD ["--gin_file=configs/bert_lamb.gin"]
