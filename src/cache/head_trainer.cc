#include "cache/head_trainer.h"

#include <torch/optim/adam.h>
#include <torch/script.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "cache/feature_kinds.h"
#include "gati/model.h"

namespace gati {
namespace {

constexpr double kPi = 3.14159265358979323846;

// A [out, in] weight and [out] bias, initialized like torch.nn.Linear from
// `rng` so that nothing depends on LibTorch's global generator.
struct Layer {
  at::Tensor weight;
  at::Tensor bias;
};

Layer MakeLayer(int64_t in, int64_t out, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  const float bound = 1.0f / std::sqrt(static_cast<float>(in));
  Layer layer{at::empty({out, in}), at::empty({out})};
  float* w = layer.weight.data_ptr<float>();
  for (int64_t i = 0; i < out * in; ++i) w[i] = bound * uniform(rng);
  float* b = layer.bias.data_ptr<float>();
  for (int64_t i = 0; i < out; ++i) b[i] = bound * uniform(rng);
  layer.weight.set_requires_grad(true);
  layer.bias.set_requires_grad(true);
  return layer;
}

Layer FromDense(const DenseLayer& dense) {
  Layer layer{at::from_blob(const_cast<float*>(dense.weight.data()),
                            {dense.out, dense.in}, at::kFloat)
                  .clone(),
              at::from_blob(const_cast<float*>(dense.bias.data()), {dense.out},
                            at::kFloat)
                  .clone()};
  layer.weight.set_requires_grad(true);
  layer.bias.set_requires_grad(true);
  return layer;
}

DenseLayer ToDense(const Layer& layer) {
  DenseLayer dense;
  at::Tensor weight = layer.weight.detach().contiguous();
  at::Tensor bias = layer.bias.detach().contiguous();
  dense.out = weight.size(0);
  dense.in = weight.size(1);
  dense.weight.assign(weight.data_ptr<float>(),
                      weight.data_ptr<float>() + weight.numel());
  dense.bias.assign(bias.data_ptr<float>(), bias.data_ptr<float>() + bias.numel());
  return dense;
}

std::vector<at::Tensor> Parameters(const std::vector<Layer>& layers) {
  std::vector<at::Tensor> parameters;
  for (const Layer& layer : layers) {
    parameters.push_back(layer.weight);
    parameters.push_back(layer.bias);
  }
  return parameters;
}

// The variant kind's pooling of one plane as a [positions, features] matrix.
at::Tensor PoolingTensor(const VariantSpec& variant, const ActivationShape& shape) {
  std::vector<float> matrix = cache_internal::PoolingMatrix(variant, shape);
  const int64_t positions = shape.height * shape.width;
  return at::from_blob(matrix.data(), {positions, static_cast<int64_t>(matrix.size()) / positions},
                       at::kFloat)
      .clone();
}

// Applies dense layers with ReLU between them.
at::Tensor Dense(at::Tensor x, const std::vector<Layer>& layers) {
  for (size_t l = 0; l < layers.size(); ++l) {
    x = at::linear(x, layers[l].weight, layers[l].bias);
    if (l + 1 < layers.size()) x = at::relu(x);
  }
  return x;
}

}  // namespace

struct PredictorTrainer::State {
  VariantSpec variant;
  int tap = 0;
  ActivationShape shape;
  int num_classes = 0;
  DistillationOptions options;
  std::mt19937_64 rng;
  std::vector<Layer> conv;  // Zero or one layer: [N, C] over channels.
  // For a streaming variant: its kind's pooling of one plane,
  // [positions, features per plane] (cache/feature_kinds.h).
  at::Tensor pooling;
  std::vector<Layer> layers;
  std::unique_ptr<torch::optim::Adam> optimizer;
  int64_t total_steps = 1;
  int64_t steps = 0;

  at::Tensor Forward(const at::Tensor& input) const {
    at::Tensor x = input;
    if (variant.streams()) {
      // The projection over channels at every position, its ReLU, then the
      // kind's pooling of each plane: [B, C, P] -> [B, N, P] -> [B, N * F].
      const Layer& c = conv[0];
      x = x.reshape({x.size(0), shape.channels, shape.height * shape.width});
      x = at::relu(at::matmul(c.weight, x) + c.bias.view({1, -1, 1}));
      x = at::matmul(x, pooling).flatten(1);
    }
    return Dense(x, layers);
  }
};

PredictorTrainer::PredictorTrainer(const VariantSpec& variant, int tap,
                                   const ActivationShape& shape, int num_classes,
                                   const DistillationOptions& options,
                                   uint64_t seed)
    : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.variant = variant;
  s.tap = tap;
  s.shape = shape;
  s.num_classes = num_classes;
  s.options = options;
  s.rng.seed(seed);
  if (variant.streams()) {
    s.conv.push_back(MakeLayer(shape.channels, variant.conv_channels, s.rng));
    s.pooling = PoolingTensor(variant, shape);
  }
  int64_t width = FeatureSize(variant, shape);
  for (int hidden : variant.hidden) {
    s.layers.push_back(MakeLayer(width, hidden, s.rng));
    width = hidden;
  }
  s.layers.push_back(MakeLayer(width, num_classes, s.rng));
  std::vector<at::Tensor> parameters = Parameters(s.conv);
  for (const at::Tensor& p : Parameters(s.layers)) parameters.push_back(p);
  s.optimizer = std::make_unique<torch::optim::Adam>(
      parameters, torch::optim::AdamOptions(options.learning_rate));
}

PredictorTrainer::PredictorTrainer(const CacheWeights& start,
                                   const DistillationOptions& options,
                                   uint64_t seed)
    : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.variant = start.variant;
  s.tap = start.tap;
  s.shape = start.shape;
  s.num_classes = start.num_classes;
  s.options = options;
  s.rng.seed(seed);
  if (start.variant.streams()) {
    s.conv.push_back(FromDense(start.conv));
    s.pooling = PoolingTensor(start.variant, start.shape);
  }
  for (const DenseLayer& layer : start.predictor) s.layers.push_back(FromDense(layer));
  std::vector<at::Tensor> parameters = Parameters(s.conv);
  for (const at::Tensor& p : Parameters(s.layers)) parameters.push_back(p);
  s.optimizer = std::make_unique<torch::optim::Adam>(
      parameters, torch::optim::AdamOptions(options.learning_rate));
}

PredictorTrainer::~PredictorTrainer() = default;

void PredictorTrainer::SetTotalSteps(int64_t steps) {
  state_->total_steps = std::max<int64_t>(1, steps);
}

// Distillation targets derived from teacher logits: constant per example,
// so TrainOnFeatures computes them once instead of every step.
struct Targets {
  at::Tensor log_p;   // log_softmax(teacher / T)
  at::Tensor p;       // softmax(teacher / T)
  at::Tensor labels;  // argmax(teacher): the base model's answers
};

static Targets MakeTargets(const at::Tensor& teacher_logits, double temperature) {
  Targets targets;
  targets.log_p = at::log_softmax(teacher_logits / temperature, 1);
  targets.p = targets.log_p.exp();
  targets.labels = teacher_logits.argmax(1);
  return targets;
}

static void Update(PredictorTrainer::State& s, const at::Tensor& input,
                   const at::Tensor& teacher_p, const at::Tensor& teacher_log_p,
                   const at::Tensor& labels) {
  ApplyIntraOpThreadsToThisThread();  // Trainers run on their own threads.
  const double progress =
      std::min(1.0, static_cast<double>(s.steps) / s.total_steps);
  const double lr = s.options.learning_rate * 0.5 * (1 + std::cos(kPi * progress));
  for (auto& group : s.optimizer->param_groups()) {
    static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
  }
  const double t = s.options.temperature;
  const double alpha = s.options.alpha;
  at::Tensor logits = s.Forward(input);
  at::Tensor kl =
      (teacher_p * (teacher_log_p - at::log_softmax(logits / t, 1))).sum(1).mean();
  at::Tensor ce = at::nll_loss(at::log_softmax(logits, 1), labels);
  at::Tensor loss = alpha * t * t * kl + (1 - alpha) * ce;
  s.optimizer->zero_grad();
  loss.backward();
  s.optimizer->step();
  ++s.steps;
}

void PredictorTrainer::Step(const at::Tensor& input,
                            const at::Tensor& teacher_logits) {
  Targets targets = MakeTargets(teacher_logits, state_->options.temperature);
  Update(*state_, input, targets.p, targets.log_p, targets.labels);
}

void PredictorTrainer::TrainOnFeatures(const at::Tensor& features,
                                       const at::Tensor& teacher,
                                       const std::vector<int64_t>& rows,
                                       int epochs,
                                       const std::function<void()>& after_step) {
  State& s = *state_;
  const int64_t batch = s.options.batch;
  const int64_t n = static_cast<int64_t>(rows.size());
  SetTotalSteps(epochs * ((n + batch - 1) / batch));
  std::vector<int64_t> order = rows;
  at::Tensor row_index = at::from_blob(order.data(), {n}, at::kLong).clone();
  at::Tensor x_rows = features.index_select(0, row_index);
  Targets targets;
  {
    at::NoGradGuard no_grad;
    targets = MakeTargets(teacher.index_select(0, row_index), s.options.temperature);
  }
  std::vector<int64_t> permutation(n);
  std::iota(permutation.begin(), permutation.end(), 0);
  for (int epoch = 0; epoch < epochs; ++epoch) {
    // One gather per epoch; batches are then contiguous slices.
    std::shuffle(permutation.begin(), permutation.end(), s.rng);
    at::Tensor index = at::from_blob(permutation.data(), {n}, at::kLong);
    at::Tensor x = x_rows.index_select(0, index);
    at::Tensor p = targets.p.index_select(0, index);
    at::Tensor log_p = targets.log_p.index_select(0, index);
    at::Tensor labels = targets.labels.index_select(0, index);
    for (int64_t begin = 0; begin < n; begin += batch) {
      int64_t size = std::min(batch, n - begin);
      Update(s, x.narrow(0, begin, size), p.narrow(0, begin, size),
             log_p.narrow(0, begin, size), labels.narrow(0, begin, size));
      if (after_step) after_step();
    }
  }
}

at::Tensor PredictorTrainer::Logits(const at::Tensor& input) const {
  at::NoGradGuard no_grad;
  return state_->Forward(input);
}

CacheWeights PredictorTrainer::Export() const {
  const State& s = *state_;
  CacheWeights weights;
  weights.variant = s.variant;
  weights.tap = s.tap;
  weights.shape = s.shape;
  weights.num_classes = s.num_classes;
  if (!s.conv.empty()) weights.conv = ToDense(s.conv[0]);
  for (const Layer& layer : s.layers) weights.predictor.push_back(ToDense(layer));
  return weights;
}

std::vector<DenseLayer> TrainSelector(const std::vector<float>& inputs,
                                      const std::vector<bool>& agrees,
                                      const SelectorOptions& options,
                                      uint64_t seed) {
  ApplyIntraOpThreadsToThisThread();
  std::mt19937_64 rng(seed);
  std::vector<Layer> layers = {MakeLayer(kSelectorInputs, options.hidden, rng),
                               MakeLayer(options.hidden, 1, rng)};
  const int64_t n = static_cast<int64_t>(agrees.size());
  if (n == 0) {
    std::vector<DenseLayer> untrained;
    for (const Layer& layer : layers) untrained.push_back(ToDense(layer));
    return untrained;
  }
  at::Tensor x = at::from_blob(const_cast<float*>(inputs.data()),
                               {n, kSelectorInputs}, at::kFloat)
                     .clone();
  std::vector<float> targets(agrees.begin(), agrees.end());
  at::Tensor y = at::from_blob(targets.data(), {n, 1}, at::kFloat).clone();
  torch::optim::Adam optimizer(Parameters(layers),
                               torch::optim::AdamOptions(options.learning_rate));
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  const int64_t batch = options.batch;
  const int64_t total_steps = options.epochs * ((n + batch - 1) / batch);
  int64_t steps = 0;
  for (int epoch = 0; epoch < options.epochs; ++epoch) {
    std::shuffle(order.begin(), order.end(), rng);
    for (int64_t begin = 0; begin < n; begin += batch) {
      int64_t size = std::min(batch, n - begin);
      const double lr = options.learning_rate * 0.5 *
                        (1 + std::cos(kPi * steps++ / std::max<int64_t>(1, total_steps)));
      for (auto& group : optimizer.param_groups()) {
        static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
      }
      at::Tensor index =
          at::from_blob(order.data() + begin, {size}, at::kLong).clone();
      at::Tensor logits = Dense(x.index_select(0, index), layers);
      at::Tensor loss = at::binary_cross_entropy_with_logits(
          logits, y.index_select(0, index));
      optimizer.zero_grad();
      loss.backward();
      optimizer.step();
    }
  }
  std::vector<DenseLayer> trained;
  for (const Layer& layer : layers) trained.push_back(ToDense(layer));
  return trained;
}

absl::StatusOr<CacheWeights> FineTuneCache(const CacheWeights& current,
                                           const TrainingRowsView& predictor_rows,
                                           const TrainingRowsView& selector_rows,
                                           const FineTuneOptions& options,
                                           uint64_t seed,
                                           const std::function<void()>& yield) {
  const std::string where = "fine-tuning " + current.variant.name + " at tap " +
                            std::to_string(current.tap);
  if (predictor_rows.count < 1) {
    return absl::InvalidArgumentError(where + ": no training rows");
  }
  try {
    auto cache = LearnedCache::Create(current);
    if (!cache.ok()) return cache.status();
    const int64_t size = (*cache)->training_input_size();
    const int64_t n = predictor_rows.count;
    const int64_t k = current.num_classes;
    at::Tensor x = at::from_blob(const_cast<float*>(predictor_rows.features), {n, size},
                                 at::kFloat)
                       .clone();
    if (current.variant.streams()) {
      x = x.view({n, current.shape.channels, current.shape.height, current.shape.width});
    }
    at::Tensor teacher =
        at::from_blob(const_cast<float*>(predictor_rows.logits), {n, k}, at::kFloat).clone();
    PredictorTrainer trainer(current, options.distillation, seed);
    std::vector<int64_t> rows(n);
    std::iota(rows.begin(), rows.end(), 0);
    trainer.TrainOnFeatures(x, teacher, rows, options.epochs, yield);
    CacheWeights tuned = trainer.Export();
    tuned.selector = current.selector;
    tuned.enabled = current.enabled;
    tuned.threshold = current.threshold;
    // The selector learns when the fine-tuned predictor agrees.
    auto tuned_cache = LearnedCache::Create(tuned);
    if (!tuned_cache.ok()) return tuned_cache.status();
    std::vector<float> inputs(selector_rows.count * kSelectorInputs);
    std::vector<bool> agrees(selector_rows.count);
    std::vector<float> logits(k);
    for (int64_t i = 0; i < selector_rows.count; ++i) {
      (*tuned_cache)->PredictFromTrainingInput(selector_rows.features + i * size,
                                               logits.data());
      SelectorFeatures(logits.data(), static_cast<int>(k), inputs.data() + i * kSelectorInputs);
      const float* base = selector_rows.logits + i * k;
      agrees[i] = std::max_element(logits.begin(), logits.end()) - logits.begin() ==
                  std::max_element(base, base + k) - base;
    }
    if (selector_rows.count > 0) {
      tuned.selector = TrainSelector(inputs, agrees, options.selector, seed);
    }
    if (yield) yield();
    return tuned;
  } catch (const c10::Error& e) {
    return absl::InvalidArgumentError(where + ": " + e.what_without_backtrace());
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(where + ": " + e.what());
  }
}

}  // namespace gati
