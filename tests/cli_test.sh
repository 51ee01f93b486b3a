#!/usr/bin/env bash
# Command-line behaviour of `gati`: usage errors, bad files, and working
# runs on the test fixtures. Usage: cli_test.sh GATI_BINARY FIXTURES_DIR
set -u
GATI="$1"
FIXTURES="$2"
passed=0
failed=0

# expect NAME WANT_RC PATTERN -- COMMAND...: runs COMMAND, checks its exit
# code (0, or "nonzero") and that stdout+stderr match the grep PATTERN.
expect() {
  local name="$1" want_rc="$2" pattern="$3"
  shift 4
  local output rc
  output=$("$@" 2>&1)
  rc=$?
  local ok=1
  if [[ "$want_rc" == "nonzero" ]]; then
    [[ $rc -ne 0 && $rc -lt 128 ]] || ok=0
  else
    [[ $rc -eq $want_rc ]] || ok=0
  fi
  grep -qE -- "$pattern" <<<"$output" || ok=0
  if [[ $ok -eq 1 ]]; then
    passed=$((passed + 1))
    echo "PASS $name"
  else
    failed=$((failed + 1))
    echo "FAIL $name (rc=$rc, wanted $want_rc and /$pattern/)"
    echo "$output" | head -20 | sed 's/^/    /'
  fi
}

expect "no subcommand" nonzero "subcommand" -- "$GATI"
expect "help" 0 "info" -- "$GATI" --help
expect "unknown subcommand" nonzero "" -- "$GATI" frobnicate
expect "info without model" nonzero "MODEL is required" -- "$GATI" info
expect "info unknown flag" nonzero "--bogus" -- "$GATI" info "$FIXTURES/tiny_cnn.pt" --bogus
expect "info bad threads" nonzero "threads" -- "$GATI" info "$FIXTURES/tiny_cnn.pt" --threads 0
expect "info missing file" nonzero "no such file" -- "$GATI" info /nonexistent/model.pt
expect "info not an archive" nonzero "not a TorchScript archive" -- "$GATI" info "$FIXTURES/not_an_archive.pt"
expect "info stage table" 0 "whole model \(frozen, optimized\)" -- "$GATI" info "$FIXTURES/tiny_cnn.pt" --repetitions 5 --warmup 1
expect "info reports threads" 0 "intra-op threads 2" -- "$GATI" info "$FIXTURES/tiny_cnn.pt" --repetitions 3 --warmup 0 --threads 2
expect "info lists stages" 0 "conv_b +8x4x4" -- "$GATI" info "$FIXTURES/tiny_cnn.pt" --repetitions 3 --warmup 0
expect "eval bad split" nonzero "split" -- "$GATI" eval "$FIXTURES/tiny_resnet.pt" --split dev
expect "eval wrong input shape" nonzero "takes inputs of shape 1x8x8, the data fashion-mnist test split .* has samples of 1x28x28" -- "$GATI" eval "$FIXTURES/tiny_cnn.pt"
expect "eval missing data" nonzero "/nonexistent: not fashion-mnist, a directory" -- "$GATI" eval "$FIXTURES/tiny_resnet.pt" --data-dir /nonexistent
expect "eval runs" 0 "accuracy [01]\.[0-9]+ \([0-9]+/300\) on fashion-mnist validation split" -- "$GATI" eval "$FIXTURES/tiny_resnet.pt" --split validation --limit 300 --batch 64
expect "eval negative limit" nonzero "limit" -- "$GATI" eval "$FIXTURES/tiny_resnet.pt" --limit -5

# gati build: flag validation, then a small real build on the tiny fixture.
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
TINY="$FIXTURES/tiny_resnet.pt"
QUICK=(--taps 0 --variants gap:linear --limit 600 --epochs 2)
expect "build without out" nonzero "--out is required" -- "$GATI" build --model "$TINY"
expect "build epsilon zero" nonzero "--epsilon must lie in \(0, 1\)" -- "$GATI" build --model "$TINY" --out "$WORK/b" --epsilon 0
expect "build epsilon above one" nonzero "--epsilon must lie in \(0, 1\)" -- "$GATI" build --model "$TINY" --out "$WORK/b" --epsilon 1.5
expect "build unknown variant" nonzero "unknown variant 'pool3:x'; known: gap:linear" -- "$GATI" build --model "$TINY" --out "$WORK/b" --variants gap:linear,pool3:x
expect "build unknown tap" nonzero "tap 999 does not exist" -- "$GATI" build --model "$TINY" --out "$WORK/b" --taps 999 --limit 600
expect "build bad tap list" nonzero "'a' is not a tap index" -- "$GATI" build --model "$TINY" --out "$WORK/b" --taps a,1
expect "build unreadable model" nonzero "no such file" -- "$GATI" build --model /nonexistent/model.pt --out "$WORK/b"
mkdir -p "$WORK/empty"
expect "build empty data" nonzero "empty: holds no .png or .jpg images" -- "$GATI" build --model "$TINY" --out "$WORK/b" --data "$WORK/empty"
expect "build wrong input shape" nonzero "takes inputs of shape 1x8x8, the data fashion-mnist validation split .* has samples of 1x28x28" -- "$GATI" build --model "$FIXTURES/tiny_cnn.pt" --out "$WORK/b" --limit 600
expect "build bad threads" nonzero "threads" -- "$GATI" build --model "$TINY" --out "$WORK/b" --threads 0
expect "build failures write nothing" 0 "^absent$" -- bash -c "[[ -e '$WORK/b' ]] && echo present || echo absent"
expect "build runs" 0 "predictor agreement with the base model" -- "$GATI" build --model "$TINY" --out "$WORK/b" "${QUICK[@]}"
expect "build wrote a bundle" 0 "\"format\": \"gati-bundle\"" -- cat "$WORK/b/manifest.json"
expect "build replaces a bundle" 0 "95% bound" -- "$GATI" build --model "$TINY" --out "$WORK/b" "${QUICK[@]}" --seed 2
expect "build prints a plan" 0 "oracle bound: mean" -- "$GATI" build --model "$TINY" --out "$WORK/b" "${QUICK[@]}" --seed 3
expect "build bad memory budget" nonzero "--memory-budget: 'lots' is not a size" -- "$GATI" build --model "$TINY" --out "$WORK/c" "${QUICK[@]}" --memory-budget lots
expect "build without plan" 0 "^absent$" -- bash -c "'$GATI' build --model '$TINY' --out '$WORK/np' ${QUICK[*]} --no-plan >/dev/null 2>&1; grep -q '\"plan\"' '$WORK/np/manifest.json' && echo present || echo absent"

expect "build plan batch without plan" nonzero "--plan-batch plans; it cannot be used with --no-plan" -- "$GATI" build --model "$TINY" --out "$WORK/nb" "${QUICK[@]}" --no-plan --plan-batch 8
expect "build plan batch out of range" nonzero "--plan-batch.*not in range" -- "$GATI" build --model "$TINY" --out "$WORK/nb" "${QUICK[@]}" --plan-batch 0
expect "build plans for batches" 0 "made for batches of 4: every latency below is per row" -- "$GATI" build --model "$TINY" --out "$WORK/bb" "${QUICK[@]}" --seed 3 --plan-batch 4
expect "build plan for batches stored" 0 "\"batch\": 4" -- cat "$WORK/bb/manifest.json"
# gati plan: re-plan the bundle just built.
expect "plan without bundle" nonzero "BUNDLE is required" -- "$GATI" plan
expect "plan missing bundle" nonzero "manifest.json: cannot open" -- "$GATI" plan "$WORK/absent"
expect "plan bad budget" nonzero "--memory-budget: '4XB' is not a size" -- "$GATI" plan "$WORK/b" --memory-budget 4XB
expect "plan bad mode" nonzero "--mode must be auto, parallel or sequential" -- "$GATI" plan "$WORK/b" --mode fast
expect "plan bad epsilon" nonzero "--epsilon must lie in \(0, 1\)" -- "$GATI" plan "$WORK/b" --epsilon 2
expect "plan negative max taps" nonzero "--max-taps must be >= 0" -- "$GATI" plan "$WORK/b" --max-taps -1
expect "plan runs" 0 "predicted latency: mean [0-9.]+ ms" -- "$GATI" plan "$WORK/b" --memory-budget 1MB --mode sequential
expect "plan stored" 0 "\"mode\": \"sequential\"" -- cat "$WORK/b/manifest.json"
expect "plan infeasible is the base model" 0 "no caches: every request runs the base model \(no cache fits the memory budget" -- "$GATI" plan "$WORK/b" --memory-budget 10B
expect "plan bad batch" nonzero "--batch.*not in range" -- "$GATI" plan "$WORK/b" --batch 0
expect "plan batch too large" nonzero "--batch.*not in range" -- "$GATI" plan "$WORK/b" --batch 5000
expect "plan batch without measuring" nonzero "--batch profiles the model at that batch size" -- "$GATI" plan "$WORK/b" --batch 4 --no-measure
expect "plan batch in parallel mode" nonzero "cannot be used with --mode parallel" -- "$GATI" plan "$WORK/b" --batch 4 --mode parallel
expect "plan for batches" 0 "made for batches of 4: every latency below is per row" -- "$GATI" plan "$WORK/b" --batch 4 --repetitions 5
expect "plan for batches stored" 0 "\"batch\": 4" -- cat "$WORK/b/manifest.json"
expect "plan bundle still loads" 0 "search: [0-9]+ plans replayed" -- "$GATI" plan "$WORK/b"
expect "plan for single requests stored" 0 "\"batch\": 1" -- cat "$WORK/b/manifest.json"
# gati trace + gati replay on the bundle just planned.
expect "trace unknown kind" nonzero "unknown trace kind 'zipf'; known: iid, skewed, video, mixed" -- "$GATI" trace --kind zipf --n 10 --out "$WORK/t.npy"
expect "trace needs out" nonzero "--out is required" -- "$GATI" trace --n 10
expect "trace runs" 0 "wrote .*t.npy \(120 iid requests" -- "$GATI" trace --n 120 --seed 3 --out "$WORK/t.npy"
expect "trace wrote labels" 0 "^present$" -- bash -c "[[ -s '$WORK/t.labels.npy' ]] && echo present"
"$GATI" trace --n 50 --out "$WORK/t50.npy" >/dev/null
/usr/bin/python3 - "$WORK" <<'PY'
import sys, numpy as np
work = sys.argv[1]
x = np.load(work + "/t.npy")
bad = x.copy(); bad[3, 0, 5, 5] = 2.0
np.save(work + "/bad_range.npy", bad)
nan = x.copy(); nan[7, 0, 1, 1] = np.nan
np.save(work + "/bad_nan.npy", nan)
np.save(work + "/bad_shape.npy", x[:, :, :20, :])
PY
expect "replay needs trace" nonzero "--trace is required" -- "$GATI" replay "$WORK/b"
expect "replay missing bundle" nonzero "manifest.json: cannot open" -- "$GATI" replay "$WORK/absent" --trace "$WORK/t.npy"
expect "replay missing trace" nonzero "none.npy: cannot open" -- "$GATI" replay "$WORK/b" --trace "$WORK/none.npy"
expect "replay wrong trace shape" nonzero "a trace for this model is float32 \(or uint8\) \[N, 1, 28, 28\]" -- "$GATI" replay "$WORK/b" --trace "$WORK/bad_shape.npy"
expect "replay labels as trace" nonzero "t.labels.npy: holds int64 values; model inputs must be float32" -- "$GATI" replay "$WORK/b" --trace "$WORK/t.labels.npy"
expect "replay pixel out of range" nonzero "sample 3 holds 2 at element 145; the pixels of an image trace must be in \[0, 1\]" -- "$GATI" replay "$WORK/b" --trace "$WORK/bad_range.npy"
expect "replay NaN pixel" nonzero "bad_nan.npy: sample 7 holds a value that is not finite \(nan at element 29\)" -- "$GATI" replay "$WORK/b" --trace "$WORK/bad_nan.npy"
expect "replay labels of another trace" nonzero "labels must be int64 \[120\]" -- "$GATI" replay "$WORK/b" --trace "$WORK/t.npy" --labels "$WORK/t50.labels.npy"
expect "replay bad mode" nonzero "mode" -- "$GATI" replay "$WORK/b" --trace "$WORK/t.npy" --mode fast
expect "replay bad exact cache" nonzero "--exact-cache: 'big' is not a size" -- "$GATI" replay "$WORK/b" --trace "$WORK/t.npy" --exact-cache big
expect "replay runs" 0 "speedup \(base / gati\) +[0-9.]+x" -- "$GATI" replay "$WORK/b" --trace "$WORK/t.npy" --labels "$WORK/t.labels.npy" --warmup 2
expect "replay reports agreement" 0 "agreement with the base model: (1\.0000|0\.9[0-9]+) \([0-9]+/120\)" -- "$GATI" replay "$WORK/b" --trace "$WORK/t.npy" --warmup 0
expect "replay reports accuracy" 0 "accuracy: gati [01]\.[0-9]+, base model" -- "$GATI" replay "$WORK/b" --trace "$WORK/t.npy" --labels "$WORK/t.labels.npy" --limit 30
expect "replay sequential online" 0 "sequential mode.*online learning on" -- "$GATI" replay "$WORK/b" --trace "$WORK/t.npy" --mode sequential --online on --concurrency 2 --limit 60
expect "replay without caches" 0 "planned taps: 0 \(caches off" -- "$GATI" replay "$WORK/b" --trace "$WORK/t.npy" --no-cache --limit 20
expect "replay exact-match cache" 0 "exact-match cache: [0-9]+ hits" -- "$GATI" replay "$WORK/b" --trace "$WORK/t.npy" --exact-cache 1MB --limit 60
expect "replay dump taps" 0 "wrote .*taps.csv" -- "$GATI" replay "$WORK/b" --trace "$WORK/t.npy" --limit 40 --dump-taps "$WORK/taps.csv"
expect "dump header" 0 "^request,tap,variant,predicted_class,top_probability,selector_score,base_class$" -- head -1 "$WORK/taps.csv"
expect "dump one row per request and cache" 0 "^41$" -- bash -c "wc -l < '$WORK/taps.csv'"
# gati serve: start-up errors (the running server is tests/serve/serve_test.py's).
SERVE=(--host 127.0.0.1 --http-port 0 --grpc-port 0 --metrics-port 0)
expect "serve without models" nonzero "give --repository DIR" -- "$GATI" serve "${SERVE[@]}"
expect "serve bad model spec" nonzero "--model 'b': expected NAME=BUNDLE" -- "$GATI" serve "${SERVE[@]}" --model b
expect "serve bad model name" nonzero "model name 'a/b' must be" -- "$GATI" serve "${SERVE[@]}" --model "a/b=$WORK/b"
expect "serve duplicate model" nonzero "model 'b' is given twice" -- "$GATI" serve "${SERVE[@]}" --model "b=$WORK/b" --model "b=$WORK/b"
expect "serve missing repository" nonzero "no such model repository directory" -- "$GATI" serve "${SERVE[@]}" --repository "$WORK/absent"
expect "serve empty repository" nonzero "holds no bundle" -- "$GATI" serve "${SERVE[@]}" --repository "$WORK/empty"
expect "serve missing bundle" nonzero "model 'x': .*manifest.json: cannot open" -- "$GATI" serve "${SERVE[@]}" --model "x=$WORK/absent"
expect "serve bad body limit" nonzero "--max-body: 'lots' is not a size" -- "$GATI" serve "${SERVE[@]}" --model "b=$WORK/b" --max-body lots
expect "serve bad record bytes" nonzero "--record-bytes: 'lots' is not a size" -- "$GATI" serve "${SERVE[@]}" --model "b=$WORK/b" --record "$WORK/rec" --record-bytes lots
expect "serve bad record rate" nonzero "--record-rate" -- "$GATI" serve "${SERVE[@]}" --model "b=$WORK/b" --record "$WORK/rec" --record-rate 2
expect "serve bad port" nonzero "--http-port" -- "$GATI" serve --model "b=$WORK/b" --http-port 70000
/usr/bin/python3 -c "import socket, time; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); print(s.getsockname()[1], flush=True); time.sleep(60)" > "$WORK/held_port" &
HOLDER=$!
for _ in $(seq 50); do [[ -s "$WORK/held_port" ]] && break; sleep 0.1; done
expect "serve port in use" nonzero "cannot listen on 127.0.0.1:$(cat "$WORK/held_port")" -- "$GATI" serve --model "b=$WORK/b" --host 127.0.0.1 --http-port "$(cat "$WORK/held_port")"
kill "$HOLDER"
mkdir -p "$WORK/notes" && echo keep > "$WORK/notes/file.txt"
expect "build keeps other directories" nonzero "exists and is not a bundle" -- "$GATI" build --model "$TINY" --out "$WORK/notes" "${QUICK[@]}"

# Your own data: a 3-channel model (the resnet18 fixture, 3x32x32) built on
# an unlabelled uint8 .npy, a trace from held-out samples, a replay; bad
# data names the file and the sample, and writes nothing.
R18="$FIXTURES/resnet18.pt"
/usr/bin/python3 - "$WORK" <<'PY'
import sys, numpy as np
work = sys.argv[1]
rng = np.random.default_rng(4)
# Blocky colour images, so that the base model's answers vary.
blocks = rng.integers(0, 256, size=(900, 3, 4, 4), dtype=np.uint8)
images = np.kron(blocks, np.ones((1, 1, 8, 8), dtype=np.uint8))
np.save(work + "/colour.npy", images[:700])
np.save(work + "/colour_holdout.npy", images[700:].astype(np.float32) / 255)
np.save(work + "/colour_labels_short.npy", np.zeros(699, dtype=np.int64))
np.save(work + "/colour_nhwc.npy", images[:700].transpose(0, 2, 3, 1).copy())
bad = images[:700].astype(np.float32) / 255
bad[123, 2, 5, 6] = np.inf
np.save(work + "/colour_inf.npy", bad)
PY
COLOUR=(--model "$R18" --taps 1,3 --variants gap:linear --epochs 2 --stream-epochs 1 --tail-budget 0 --plan-epsilon 0.2)
expect "build on your npy" 0 "samples 700: predictor-train" -- "$GATI" build "${COLOUR[@]}" --data "$WORK/colour.npy" --out "$WORK/colour"
expect "a calibration split too small to certify epsilon warns" 0 "warning: the calibration split holds 210 samples, and certifying epsilon 0.01 at confidence 0.95 takes at least 299 hits.*build on at least 997 samples" -- "$GATI" build "${COLOUR[@]}" --data "$WORK/colour.npy" --out "$WORK/colour_warn"
expect "your data in the manifest" 0 "colour.npy \(700 samples of 3x32x32 uint8, unlabelled\)" -- cat "$WORK/colour/manifest.json"
expect "build on channels-last images" 0 "samples 700: predictor-train" -- "$GATI" build "${COLOUR[@]}" --data "$WORK/colour_nhwc.npy" --out "$WORK/colour_nhwc"
expect "channels-last images are read channels first" 0 "colour_nhwc.npy \(700 samples of 32x32x3 uint8, unlabelled\), channels last, read as 3x32x32" -- cat "$WORK/colour_nhwc/manifest.json"
expect "channels last builds the same caches" 0 "^same$" -- bash -c "cmp -s '$WORK/colour/caches/'\$(ls '$WORK/colour/caches' | head -1) '$WORK/colour_nhwc/caches/'\$(ls '$WORK/colour_nhwc/caches' | head -1) && echo same || echo differ"
expect "trace from your npy" 0 "wrote .*ct.npy \(80 video requests from .*colour_holdout.npy.*no labels file" -- "$GATI" trace --kind video --n 80 --data "$WORK/colour_holdout.npy" --out "$WORK/ct.npy"
expect "skewed trace needs labels" nonzero "needs labels" -- "$GATI" trace --kind skewed --n 80 --data "$WORK/colour_holdout.npy" --out "$WORK/cs.npy"
expect "replay your trace" 0 "speedup \(base / gati\) +[0-9.]+x" -- "$GATI" replay "$WORK/colour" --trace "$WORK/ct.npy" --warmup 2
expect "replay another model's trace" nonzero "a trace for this model is float32 \(or uint8\) \[N, 3, 32, 32\]; it has samples of 1x28x28" -- "$GATI" replay "$WORK/colour" --trace "$WORK/t.npy"
expect "build labels count" nonzero "colour_labels_short.npy: has 699 labels for the 700 samples" -- "$GATI" build "${COLOUR[@]}" --data "$WORK/colour.npy" --labels "$WORK/colour_labels_short.npy" --out "$WORK/colour_bad"
expect "build non-finite sample" nonzero "colour_inf.npy: sample 123 holds a value that is not finite" -- "$GATI" build "${COLOUR[@]}" --data "$WORK/colour_inf.npy" --out "$WORK/colour_bad"
expect "build data of another shape" nonzero "takes inputs of shape 3x32x32, the data fashion-mnist validation split" -- "$GATI" build "${COLOUR[@]}" --out "$WORK/colour_bad" --limit 600
expect "bad data writes nothing" 0 "^absent$" -- bash -c "[[ -e '$WORK/colour_bad' ]] && echo present || echo absent"

# An image folder: PNG and JPEG files of another size than the model's,
# in class subdirectories, resized and cropped as the metadata says.
/usr/bin/python3 - "$WORK" <<'PY'
import os, sys, numpy as np
from PIL import Image
work = sys.argv[1]
images = np.load(work + "/colour.npy")
for i in range(400):
    folder = os.path.join(work, "folder", ("ants", "bees")[i % 2])
    os.makedirs(folder, exist_ok=True)
    picture = Image.fromarray(images[i].transpose(1, 2, 0)).resize((48, 40))
    picture.save(os.path.join(folder, f"{i:03d}" + (".png" if i % 3 else ".jpg")))
os.makedirs(work + "/folder_bad/ants", exist_ok=True)
Image.fromarray(images[0].transpose(1, 2, 0)).save(work + "/folder_bad/ants/a.png")
with open(work + "/folder_bad/ants/b.png", "wb") as f:
    f.write(open(work + "/folder_bad/ants/a.png", "rb").read()[:100])
PY
# The model: torchvision's ResNet-18 for the 2 classes, staged by torch.fx
# (--auto), images scaled to a shorter side of 36, then cropped to 32.
EXPORT="$(dirname "$0")/../tools/gati_export.py"
expect "export --auto" 0 "taps \(after each stage but the last\): 0:" -- /usr/bin/python3 "$EXPORT" --torchvision resnet18 --num-classes 2 --class-names ants,bees --input-shape 3,32,32 --resize 36 --auto --out "$WORK/r18auto.pt"
FOLDER=(--model "$WORK/r18auto.pt" --taps 2,4 --variants gap:linear --epochs 2 --stream-epochs 1 --tail-budget 0 --plan-epsilon 0.2)
expect "build on an image folder" 0 "samples 400: predictor-train" -- "$GATI" build "${FOLDER[@]}" --data "$WORK/folder" --out "$WORK/folder.bundle"
expect "the folder in the manifest" 0 "folder \(400 images in 2 classes, shorter side to 36, center crop 32x32\)" -- cat "$WORK/folder.bundle/manifest.json"
expect "trace from an image folder" 0 "wrote .*ft.npy \(60 iid requests from .*folder.*ft.labels.npy" -- "$GATI" trace --n 60 --data "$WORK/folder" --model "$WORK/r18auto.pt" --out "$WORK/ft.npy"
expect "trace of a folder needs the model" nonzero "an image folder needs the model \(--model\)" -- "$GATI" trace --n 60 --data "$WORK/folder" --out "$WORK/ft2.npy"
expect "replay a folder trace" 0 "accuracy: gati" -- "$GATI" replay "$WORK/folder.bundle" --trace "$WORK/ft.npy" --labels "$WORK/ft.labels.npy" --warmup 2
expect "eval on an image folder" 0 "accuracy [01]\.[0-9]+ \([0-9]+/400\) on .*folder \(400 images in 2 classes" -- "$GATI" eval "$WORK/r18auto.pt" --data "$WORK/folder"
expect "eval needs labels" nonzero "has no labels; accuracy needs them" -- "$GATI" eval "$R18" --data "$WORK/colour.npy"
expect "replay an image folder in order" 0 "accuracy: gati" -- "$GATI" replay "$WORK/folder.bundle" --trace "$WORK/folder" --limit 50 --warmup 2
expect "build truncated image" nonzero "sample 1: .*b.png: corrupt or truncated PNG" -- "$GATI" build "${COLOUR[@]}" --data "$WORK/folder_bad" --out "$WORK/colour_bad"
expect "bad folder writes nothing" 0 "^absent$" -- bash -c "[[ -e '$WORK/colour_bad' ]] && echo present || echo absent"

# A recording (the shards gati serve --record writes: raw float32 samples)
# as build and trace data.
/usr/bin/python3 - "$WORK" <<'PY'
import os, sys, numpy as np
work = sys.argv[1]
x = np.load(work + "/colour.npy").astype(np.float32) / 255
os.makedirs(work + "/rec/r18", exist_ok=True)
for k in range(3):
    np.save(work + f"/rec/r18/shard-{k:06d}.npy", x[k * 256:(k + 1) * 256][:256])
PY
expect "build on a recording" 0 "samples 700: predictor-train" -- "$GATI" build "${COLOUR[@]}" --data "$WORK/rec/r18" --out "$WORK/rec.bundle"
expect "the recording in the manifest" 0 "a recording of 700 samples of 3x32x32 in 3 shards" -- cat "$WORK/rec.bundle/manifest.json"
expect "replay a recording" 0 "speedup \(base / gati\)" -- "$GATI" replay "$WORK/rec.bundle" --trace "$WORK/rec/r18" --limit 60 --warmup 2

# A transformer: token taps get token variants (tok-mean, cls, tok-meanmax).
VIT="$FIXTURES/tiny_vit.pt"
expect "build a ViT" 0 "cls:linear" -- "$GATI" build --model "$VIT" --out "$WORK/vit" --limit 600 --epochs 2 --tail-budget 0 --plan-epsilon 0.2
expect "ViT taps hold tokens" 0 "tokens:17x16" -- bash -c "strings '$WORK/vit/caches/'*.safetensors | grep -m1 -o 'tokens:17x16'"
expect "replay a ViT" 0 "speedup \(base / gati\) +[0-9.]+x" -- "$GATI" replay "$WORK/vit" --trace "$WORK/t.npy" --warmup 2
expect "ViT with image variants only" nonzero "tap 0 carries activations tokens:17x16 and none of the variants fits them" -- "$GATI" build --model "$VIT" --out "$WORK/vit_bad" --limit 600 --variants gap:linear

# Inputs that are not images, from a user's own nn.Modules staged by --auto:
# an MLP on feature vectors [20] (vector taps: id and proj variants by
# default) and a CNN on spectrograms [1, 16, 10]; float .npy data.
cat > "$WORK/user_models.py" <<'PY'
import torch
from torch import nn

class FeatureMlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(20, 64), nn.Linear(64, 64)
        self.c, self.out = nn.Linear(64, 32), nn.Linear(32, 3)

    def forward(self, x):
        x = torch.relu(self.a(x))
        x = torch.relu(self.b(x))
        return self.out(torch.relu(self.c(x)))

def mlp():
    torch.manual_seed(1)
    return FeatureMlp()

def spectrogram_cnn():
    torch.manual_seed(2)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))
PY
/usr/bin/python3 - "$WORK" <<'PY'
import sys, numpy as np
work = sys.argv[1]
rng = np.random.default_rng(5)
centres = rng.normal(size=(6, 20)).astype(np.float32) * 2
features = centres[rng.integers(0, 6, 700)] + rng.normal(size=(700, 20)).astype(np.float32) * 0.3
np.save(work + "/features.npy", features.astype(np.float32))
spectra = rng.random((500, 1, 16, 10), dtype=np.float32)
spectra[::2, :, :8] *= 0.1  # Two kinds of spectrogram.
np.save(work + "/spectra.npy", spectra)
PY
expect "export an MLP with --auto" 0 "taps \(after each stage but the last\): 0:" -- /usr/bin/python3 "$EXPORT" --module "$WORK/user_models.py:mlp" --input-shape 20 --auto --out "$WORK/mlp.pt"
expect "build on feature vectors" 0 "id:linear" -- "$GATI" build --model "$WORK/mlp.pt" --data "$WORK/features.npy" --out "$WORK/mlp.bundle" --epochs 2 --stream-epochs 1 --tail-budget 0 --plan-epsilon 0.2
expect "vector taps in the bundle" 0 "vector:64" -- bash -c "strings '$WORK/mlp.bundle/caches/'*.safetensors | grep -m1 -o 'vector:64'"
expect "a projection trained on a vector tap" 0 "proj16:linear" -- cat "$WORK/mlp.bundle/manifest.json"
expect "trace of feature vectors" 0 "wrote .*mt.npy \(80 video requests" -- "$GATI" trace --kind video --n 80 --data "$WORK/features.npy" --out "$WORK/mt.npy"
expect "replay feature vectors" 0 "speedup \(base / gati\) +[0-9.]+x" -- "$GATI" replay "$WORK/mlp.bundle" --trace "$WORK/mt.npy" --warmup 2
expect "MLP with image variants only" nonzero "carries activations vector:64 and none of the variants fits them; they take id, projN variants" -- "$GATI" build --model "$WORK/mlp.pt" --data "$WORK/features.npy" --out "$WORK/mlp_bad" --variants gap:linear
expect "export a spectrogram CNN with --auto" 0 "taps \(after each stage but the last\): 0:" -- /usr/bin/python3 "$EXPORT" --module "$WORK/user_models.py:spectrogram_cnn" --input-shape 1,16,10 --auto --out "$WORK/spec.pt"
expect "build on spectrograms" 0 "samples 500: predictor-train" -- "$GATI" build --model "$WORK/spec.pt" --data "$WORK/spectra.npy" --out "$WORK/spec.bundle" --epochs 2 --stream-epochs 1 --tail-budget 0 --plan-epsilon 0.2 --variants gap:linear,pool4:mlp256
expect "replay spectrograms" 0 "speedup \(base / gati\) +[0-9.]+x" -- "$GATI" replay "$WORK/spec.bundle" --trace "$WORK/spectra.npy" --limit 60 --warmup 2

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
