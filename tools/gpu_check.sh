#!/usr/bin/env bash
# The GPU paths, each time-boxed, on a device machine (../shared/gpu/README.md): until `zoo doctor --bench` exists,
# run it as: bash .gpu/on-device.sh bash tools/gpu_check.sh   (the log goes to $OUT/log.txt). It needs the bundle's
# onnxruntime.quantization for the fp16 export line (make-bundle.sh removes it).
set -u
L=$OUT/log.txt; R=/tmp/r; mkdir -p $R
step() { local t=$1; shift; echo "=== [$(date +%T)] $*" | tee -a $L; local s=$(date +%s.%N); timeout $t "$@" >>$L 2>&1; local rc=$?; echo "--- rc=$rc $(python3 -c "print(round($(date +%s.%N)-$s,1))") s" | tee -a $L; }
nvidia-smi -L >>$L 2>&1
python3 -c "import importlib.util as u; print({m: bool(u.find_spec(m)) for m in ['matplotlib','captum','jsonschema','sklearn','tensorboard','timm','torchmetrics','onnxscript','optuna','joblib','PIL']})" >>$L 2>&1
Z="python3 -m zoo.cli"
step 60 $Z doctor
T="seed=0 trainer.progress=false trainer.device=cuda trainer.max_epochs=3"
step 120 $Z train $T hydra.run.dir=$R/fp32
cp $R/fp32/metrics.json $OUT/metrics_fp32.json 2>/dev/null
step 90 $Z train $T trainer.precision=bf16-mixed hydra.run.dir=$R/bf16
step 90 $Z train $T trainer.precision=16-mixed hydra.run.dir=$R/fp16
step 90 $Z train $T trainer.channels_last=true trainer.precision=bf16-mixed hydra.run.dir=$R/cl
step 150 $Z train $T trainer.compile=true hydra.run.dir=$R/compile
step 120 python3 -m torch.distributed.run --nproc_per_node=1 -m zoo.cli train $T hydra.run.dir=$R/ddp
for r in fp32 bf16 fp16 cl compile ddp; do python3 -c "import json;m=json.load(open('$R/$r/metrics.json'));print('$r', 'test', {k:v for k,v in m['test'].items() if k in ('accuracy','loss')}, 'epoch_s', m.get('epoch_seconds'))" >>$L 2>&1; done
step 120 $Z bench train trainer.device=cuda repeats=2 batches=20
step 90 $Z export checkpoint=$R/fp32 output=$R/exp32
step 90 $Z export checkpoint=$R/fp32 output=$R/exp16 precision=fp16
step 60 $Z predict model=$R/exp32/model.onnx input=$R/exp32/golden providers=cuda
step 60 $Z verify $R/exp32
step 150 $Z bench inference model=$R/exp32/model.onnx,$R/exp16/model.onnx batch=1,64 repeats=20 providers=cuda
step 90 $Z bench inference model=$R/exp32/model.onnx batch=64 repeats=20 providers=cuda io_binding=true device_output=true
step 90 $Z bench inference model=$R/exp32/model.onnx batch=64 repeats=20 providers=cuda cuda_graph=true io_binding=true
step 60 $Z predict model=$R/exp32/model.onnx input=$R/exp32/golden providers=cuda gpu_mem_limit=2 prefer_nhwc=true
step 60 $Z predict model=$R/exp32/model.onnx input=$R/exp32/golden providers=tensorrt
echo "=== done $(date +%T)" >>$L
