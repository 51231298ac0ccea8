/* Classify the MNIST test images with LeNet-5 compiled ahead of time by `percept build`:
 * the header's normalization constants prepare each image as `percept eval` does, and
 * the program prints the accuracy (the same as `percept eval` with the same weights) and
 * the library's latency per image.
 *
 *   percept build examples/lenet5.nn --weights runs/lenet5/weights.safetensors --out examples/aot/build
 *   cc -O2 -std=c99 -o classify examples/aot/classify_mnist.c -Iexamples/aot/build examples/aot/build/liblenet5.a
 *   ./classify data/mnist
 *
 * The IDX files are read through `gzip -dc` (popen), so no zlib is needed. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "lenet5.h"

/* An IDX file's payload (after its magic and dimensions), or NULL. */
static unsigned char *read_idx(const char *dir, const char *name, size_t *count, size_t item) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "gzip -dc '%s/%s'", dir, name);
    FILE *f = popen(cmd, "r");
    if (!f) return NULL;
    unsigned char head[4];
    if (fread(head, 1, 4, f) != 4) { pclose(f); return NULL; }
    int dims = head[3];
    uint32_t n = 0;
    for (int d = 0; d < dims; d++) {
        unsigned char b[4];
        if (fread(b, 1, 4, f) != 4) { pclose(f); return NULL; }
        if (d == 0) n = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    }
    unsigned char *data = malloc((size_t)n * item);
    if (!data || fread(data, item, n, f) != n) { free(data); pclose(f); return NULL; }
    pclose(f);
    *count = n;
    return data;
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "data/mnist";
    size_t n = 0, m = 0;
    unsigned char *images = read_idx(dir, "t10k-images-idx3-ubyte.gz", &n, LENET5_INPUT_SIZE);
    unsigned char *labels = read_idx(dir, "t10k-labels-idx1-ubyte.gz", &m, 1);
    if (!images || !labels || n != m) {
        fprintf(stderr, "error: cannot read the MNIST test set in %s\n", dir);
        return 1;
    }
    float input[LENET5_BATCH * LENET5_INPUT_SIZE], output[LENET5_BATCH * LENET5_OUTPUT_SIZE];
    size_t correct = 0, done = 0;
    struct timespec t0, t1;
    double seconds = 0;
    for (size_t start = 0; start + LENET5_BATCH <= n; start += LENET5_BATCH) {
        for (size_t i = 0; i < LENET5_BATCH * LENET5_INPUT_SIZE; i++)
            input[i] = (images[start * LENET5_INPUT_SIZE + i] / 255.0f - LENET5_MEAN) / LENET5_STD;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int rc = lenet5_forward(input, output);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (rc != 0) {
            fprintf(stderr, "error: lenet5_forward returned %d (2: this CPU lacks a feature the code needs)\n", rc);
            return 1;
        }
        seconds += (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
        for (size_t s = 0; s < LENET5_BATCH; s++) {
            int best = 0;
            for (int k = 1; k < LENET5_OUTPUT_SIZE; k++)
                if (output[s * LENET5_OUTPUT_SIZE + k] > output[s * LENET5_OUTPUT_SIZE + best]) best = k;
            correct += best == labels[start + s];
            done++;
        }
    }
    printf("test accuracy %.2f%% (%zu of %zu images), %.1f us per image (batch %d, one thread)\n",
           100.0 * correct / done, correct, done, 1e6 * seconds / done, LENET5_BATCH);
    free(images);
    free(labels);
    return 0;
}
