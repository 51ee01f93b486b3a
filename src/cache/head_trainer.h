// Training of predictor and selector heads with LibTorch autograd and
// torch::optim. The only room that needs LibTorch's training API; the heavy
// headers stay in head_trainer.cc.
#ifndef GATI_CACHE_HEAD_TRAINER_H_
#define GATI_CACHE_HEAD_TRAINER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "gati/cache.h"
#include "gati/status.h"

namespace at {
class Tensor;
}  // namespace at

namespace gati {

struct DistillationOptions {
  // loss = alpha * T^2 * KL(softmax(teacher/T) || softmax(z/T))
  //        + (1 - alpha) * CE(z, argmax teacher).
  double alpha = 0.5;
  double temperature = 4.0;
  double learning_rate = 1e-2;  // Adam, cosine-decayed to 0 over training.
  int batch = 128;
};

// One predictor being trained. Not thread-safe; different trainers may run
// on different threads at once.
class PredictorTrainer {
 public:
  // Parameters are initialized from `seed` alone (uniform +-1/sqrt(fan_in),
  // as torch.nn.Linear), so training is deterministic for a fixed seed.
  PredictorTrainer(const VariantSpec& variant, int tap,
                   const ActivationShape& shape, int num_classes,
                   const DistillationOptions& options, uint64_t seed);
  // Starts from trained weights (conv and predictor layers of `start`) to
  // fine-tune them; `seed` drives only the shuffling.
  PredictorTrainer(const CacheWeights& start,
                   const DistillationOptions& options, uint64_t seed);
  ~PredictorTrainer();

  // Total optimizer steps planned; sets the learning-rate schedule.
  void SetTotalSteps(int64_t steps);

  // One optimizer step on a batch. `input` is [B, FeatureSize] pooled
  // features, or [B, C, H, W] activations when the variant streams;
  // `teacher_logits` is the base model's [B, num_classes].
  void Step(const at::Tensor& input, const at::Tensor& teacher_logits);

  // Trains for `epochs` over the rows `rows` of a feature bank [N, F] (or
  // activations [N, C, H, W] for streaming variants) with teacher logits
  // [N, K], shuffled per epoch from the seed; `after_step` (optional) runs
  // after every optimizer step.
  void TrainOnFeatures(const at::Tensor& features, const at::Tensor& teacher,
                       const std::vector<int64_t>& rows, int epochs,
                       const std::function<void()>& after_step = {});

  // Logits for `input` (same layouts as Step), without recording gradients.
  at::Tensor Logits(const at::Tensor& input) const;

  // The trained predictor (conv and predictor layers; no selector).
  CacheWeights Export() const;

  struct State;  // Defined in head_trainer.cc.

 private:
  std::unique_ptr<State> state_;
};

struct SelectorOptions {
  int hidden = 16;  // Width of the one hidden ReLU layer.
  int epochs = 50;
  int batch = 512;
  double learning_rate = 1e-2;
};

// Trains the selector (kSelectorInputs -> hidden -> 1, sigmoid) with binary
// cross-entropy on `inputs` (row i at inputs[i * kSelectorInputs]) and
// `agrees` (predictor class == base class). Deterministic for a seed.
std::vector<DenseLayer> TrainSelector(const std::vector<float>& inputs,
                                      const std::vector<bool>& agrees,
                                      const SelectorOptions& options,
                                      uint64_t seed);

// Rows of training inputs (LearnedCache::ExtractTrainingInput layout) and
// the base model's logits, row-major; not owned.
struct TrainingRowsView {
  const float* features = nullptr;
  const float* logits = nullptr;
  int64_t count = 0;
};

struct FineTuneOptions {
  DistillationOptions distillation;  // Learning rate and batch of the update.
  int epochs = 4;
  SelectorOptions selector;
};

// The online learner's update of one cache: fine-tunes `current`'s conv and
// predictor layers on `predictor_rows`, then trains a new selector on
// `selector_rows` from the fine-tuned predictor's outputs (agreement with
// the base class). The threshold and enabled flag are left as in `current`.
// `yield` runs after every optimizer step (the caller's time slicing).
// InvalidArgument when there are no predictor rows or LibTorch fails.
absl::StatusOr<CacheWeights> FineTuneCache(const CacheWeights& current,
                                           const TrainingRowsView& predictor_rows,
                                           const TrainingRowsView& selector_rows,
                                           const FineTuneOptions& options,
                                           uint64_t seed,
                                           const std::function<void()>& yield);

}  // namespace gati

#endif  // GATI_CACHE_HEAD_TRAINER_H_
