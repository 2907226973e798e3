#!/usr/bin/env bash
# The tour with curl only (python3 reads the JSON answers): upload XOR, train it while reading
# the live event stream, read the epochs, predict, fetch the weights and the loss curve, then
# upload a CSV file.
#
#   make run                  # in one terminal
#   bash examples/curl.sh     # in another (BACKPROP_URL, BACKPROP_API_KEY if AUTH=required)
set -euo pipefail

URL=${BACKPROP_URL:-http://127.0.0.1:8000}
URL=${URL%/}
AUTH=()
if [[ -n ${BACKPROP_API_KEY:-} ]]; then
    AUTH=(-H "Authorization: Bearer $BACKPROP_API_KEY")
fi
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

fail() {
    echo "error: $*" >&2
    exit 1
}

# api METHOD PATH [curl options...]: the answer's body on stdout; exit 1 with the status and the
# body on stderr when the service answers an error or cannot be reached.
api() {
    local method=$1 path=$2 answer status code=0
    shift 2
    answer=$(curl -sS -X "$method" "${AUTH[@]}" -w '\n%{http_code}' "$URL$path" "$@") || code=$?
    # curl's exit code 7: nothing listens there.
    [[ $code != 7 ]] ||
        fail "cannot reach $URL: start the service with 'make run' (or set BACKPROP_URL)"
    [[ $code == 0 ]] || fail "$method $path: curl exited with $code"
    status=${answer##*$'\n'}
    answer=${answer%$'\n'*}
    [[ $status != 401 ]] || answer+=" (set BACKPROP_API_KEY to a key)"
    [[ $status == 2* ]] || fail "$method $path answered $status: $answer"
    printf '%s\n' "$answer"
}

# fields NAME...: the values of the JSON object on stdin, tab-separated (lists and null as JSON).
fields() {
    python3 -c 'import json, sys
answer = json.load(sys.stdin)
print(*(v if isinstance(v, str) else json.dumps(v) for v in map(answer.get, sys.argv[1:])),
      sep="\t")' "$@"
}

json=(-H 'Content-Type: application/json')

answer=$(api POST /v1/datasets "${json[@]}" -d '{"builtin": "xor"}')
IFS=$'\t' read -r DATASET rows < <(fields id rows <<<"$answer")
echo "POST /v1/datasets: data set $DATASET, xor, $rows rows"

answer=$(api POST /v1/jobs "${json[@]}" -d '{
  "dataset_id": '"$DATASET"', "model_name": "xor",
  "network": {"layers": [{"units": 4, "activation": "tanh"}, {"units": 2, "activation": "softmax"}]},
  "training": {"epochs": 300, "batch_size": "full", "seed": 1,
               "optimizer": {"name": "adam", "learning_rate": 0.05}}}')
IFS=$'\t' read -r JOB status < <(fields id status <<<"$answer")
echo "POST /v1/jobs: job $JOB $status"

# The stream ends after the job's final status.
events=$(curl -sSN --max-time 120 "${AUTH[@]}" "$URL/v1/jobs/$JOB/events") ||
    fail "the event stream of job $JOB ended early"
echo "GET /v1/jobs/$JOB/events: $(grep -c '^event: epoch' <<<"$events") epoch events"

answer=$(api GET "/v1/jobs/$JOB")
IFS=$'\t' read -r status error loss MODEL < <(fields status error train_loss model_id <<<"$answer")
[[ $status == succeeded ]] || fail "job $JOB $status: $error"
echo "GET /v1/jobs/$JOB: succeeded, train loss $loss, model $MODEL"

echo "GET /v1/jobs/$JOB/epochs?after=299: $(api GET "/v1/jobs/$JOB/epochs?after=299")"

answer=$(api POST "/v1/models/$MODEL/predict" "${json[@]}" \
    -d '{"instances": [[0, 0], [0, 1], [1, 0], [1, 1]]}')
predictions=$(fields predictions <<<"$answer")
echo "POST /v1/models/$MODEL/predict: $predictions"
[[ $predictions == '[0, 1, 1, 0]' ]] || fail "XOR not learned: $predictions"

answer=$(api GET "/v1/models/$MODEL/weights")
layers=$(python3 -c 'import json, sys
layers = json.load(sys.stdin)["layers"]
print(", ".join("%dx%d %s" % (len(x["W"]), len(x["b"]), x["activation"]) for x in layers))' \
    <<<"$answer")
echo "GET /v1/models/$MODEL/weights: W and b of $layers"

svg=$(api GET "/v1/jobs/$JOB/loss.svg")
echo "GET /v1/jobs/$JOB/loss.svg: ${#svg} characters of SVG"

answer=$(api POST /v1/datasets -F "file=@$HERE/data/iris.csv" -F target=species \
    -F task=classification)
IFS=$'\t' read -r id rows classes < <(fields id rows classes <<<"$answer")
echo "POST /v1/datasets (iris.csv): data set $id, $rows rows, classes $classes"
echo "ok"
