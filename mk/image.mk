# mk/image.mk - the container image (docker/Dockerfile) built here with
# podman from a Debian bookworm base made locally from Debian's packages
# (mmdebstrap: no registry is reachable), and its test.
#   make image ARCH=amd64|arm64     build localhost/qwen-nginx:ARCH (the module
#                                   cross-compiled on this host, the final stage
#                                   arm64 under qemu)
#   make test-image ARCH=...        run the image's nginx with the tiny test model:
#                                   /ping, a plain and a streamed /invocations, the drain
# MODEL=path (in the repository) bakes a model in. The images live in
# $(BUILD)/image/storage (podman --root), apart from any system store.
# `ARCH` here names the image's architecture; the engine's own builds keep
# the host's (sub-makes get ARCH=$(IMAGE_HOST_ARCH)).
# The Dockerfile's build stage runs on the host's platform and cross-compiles
# for another ARCH (gcc-aarch64-linux-gnu, multiarch -dev packages): it needs
# the host's base too, and binfmt qemu for nginx's configure tests and the
# final stage's apt.
IMAGE_HOST_ARCH := $(shell uname -m)
IMAGE_ARCH   = $(if $(filter arm64 aarch64,$(ARCH)),arm64,amd64)
IMAGE_BUILD_ARCH = $(if $(filter aarch64,$(IMAGE_HOST_ARCH)),arm64,amd64)
IMAGE_BASES  = $(sort $(IMAGE_ARCH) $(IMAGE_BUILD_ARCH))
IMAGE_DIR    = $(abspath $(BUILD))/image
IMAGE_NAME   = localhost/qwen-nginx:$(IMAGE_ARCH)
IMAGE_BASE   = localhost/qwen-base:bookworm-$(IMAGE_ARCH)
IMAGE_BUILD_BASE = localhost/qwen-base:bookworm-$(IMAGE_BUILD_ARCH)
IMAGE_MIRROR ?= http://deb.debian.org/debian
IMAGE_STORAGE_DRIVER ?= vfs
PODMAN       = podman --root $(IMAGE_DIR)/storage --runroot $(IMAGE_DIR)/run \
               --storage-driver $(IMAGE_STORAGE_DRIVER)
BUILDAH      = buildah --root $(IMAGE_DIR)/storage --runroot $(IMAGE_DIR)/run \
               --storage-driver $(IMAGE_STORAGE_DRIVER)
IMAGE_APT_PACKAGES = podman buildah mmdebstrap uidmap qemu-user-static curl
MODEL_ARG    = $(if $(MODEL),--build-arg MODEL=$(MODEL))
# more `podman build` options, e.g. IMAGE_BUILD_FLAGS=--no-cache
IMAGE_BUILD_FLAGS ?=

.PHONY: image test-image deps-image image-binfmt image-base

deps-image:
	@missing=""; \
	for p in $(IMAGE_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then echo "deps-image: all packages present"; \
	else echo "deps-image: installing$$missing"; apt-get update -qq && \
	     DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

# arm64 binaries on an x86 host: qemu through binfmt_misc (root)
image-binfmt: deps-image
	@if [ "$(IMAGE_ARCH)" = arm64 ] && [ "$(IMAGE_HOST_ARCH)" != aarch64 ]; then \
	    [ -e /proc/sys/fs/binfmt_misc/register ] || \
	        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; \
	    [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || \
	        cat /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register; \
	    echo "image: qemu-aarch64 registered with binfmt_misc"; \
	fi

# A minimal bookworm from Debian's packages, imported as the base image;
# without documentation and locales, as Debian's -slim images.
IMAGE_SLIM = $(foreach p,/usr/share/doc/* /usr/share/man/* /usr/share/info/* \
               /usr/share/locale/* /usr/share/lintian/*,--dpkgopt='path-exclude=$(p)') \
             --dpkgopt='path-include=/usr/share/doc/*/copyright'
$(IMAGE_DIR)/base-%.tar:
	@mkdir -p $(IMAGE_DIR)
	mmdebstrap --variant=minbase --arch=$* --format=tar $(IMAGE_SLIM) \
	    --customize-hook='rm -rf "$$1"/var/cache/apt/* "$$1"/var/lib/apt/lists/*' \
	    bookworm $@.part \
	    "deb $(IMAGE_MIRROR) bookworm main" "deb $(IMAGE_MIRROR) bookworm-updates main" \
	    "deb http://deb.debian.org/debian-security bookworm-security main"
	mv $@.part $@

# the target's base and the build host's (one when they are the same)
image-base: image-binfmt $(IMAGE_BASES:%=$(IMAGE_DIR)/base-%.tar)
	@for a in $(IMAGE_BASES); do \
	    $(PODMAN) image exists localhost/qwen-base:bookworm-$$a || \
	    $(PODMAN) import --arch $$a $(IMAGE_DIR)/base-$$a.tar localhost/qwen-base:bookworm-$$a \
	    || exit 1; \
	done

# buildah 1.28 sets BUILDPLATFORM and TARGETPLATFORM inside stages but not
# for `FROM --platform=$$...` (it would look for a base as the wrong platform
# and try a registry): given here, as docker buildx sets them.
image: image-base
	$(PODMAN) build --isolation=chroot --platform linux/$(IMAGE_ARCH) --format docker \
	    --build-arg BUILDPLATFORM=linux/$(IMAGE_BUILD_ARCH) \
	    --build-arg TARGETPLATFORM=linux/$(IMAGE_ARCH) \
	    --ignorefile docker/Dockerfile.dockerignore --build-arg BASE=$(IMAGE_BASE) \
	    --build-arg BUILD_BASE=$(IMAGE_BUILD_BASE) \
	    $(MODEL_ARG) $(IMAGE_BUILD_FLAGS) -f docker/Dockerfile -t $(IMAGE_NAME) .
	@$(PODMAN) image inspect --format '{{.Size}}' $(IMAGE_NAME) | \
	    awk '{printf "image: $(IMAGE_NAME) %.1f MB\n", $$1 / 1e6}'

test-image: image-binfmt
	@$(PODMAN) image exists $(IMAGE_NAME) || { echo "test-image: no $(IMAGE_NAME): make image ARCH=$(IMAGE_ARCH)"; exit 1; }
	$(MAKE) --no-print-directory ARCH=$(IMAGE_HOST_ARCH) test-models
	BUILDAH="$(BUILDAH)" IMAGE=$(IMAGE_NAME) IMAGE_ARCH=$(IMAGE_ARCH) \
	    MODEL_FILE=$(abspath $(BUILD))/models/tiny-f32.gguf tests/image_test.sh

# The Dockerfile through npm's dockerfile-utils linter (hadolint is not
# packaged for Debian 12).
DOCKERLINT_DIR = $(BUILD)/dockerlint
.PHONY: lint-image
lint-image:
	@[ -x $(DOCKERLINT_DIR)/node_modules/.bin/dockerfile-utils ] || \
	    npm install --silent --no-audit --no-fund --prefix $(DOCKERLINT_DIR) dockerfile-utils@0.16
	$(DOCKERLINT_DIR)/node_modules/.bin/dockerfile-utils lint docker/Dockerfile
	@echo "lint-image: docker/Dockerfile: no problems"
