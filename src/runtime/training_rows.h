// Rows the online learner trains and validates on.
#ifndef GATI_RUNTIME_TRAINING_ROWS_H_
#define GATI_RUNTIME_TRAINING_ROWS_H_

#include <cstdint>
#include <vector>

namespace gati::runtime {

// Row i: features[i * feature_size ...] (a LearnedCache training input) and
// the base model's logits[i * num_classes ...].
struct TrainingRows {
  int64_t count = 0;
  int64_t feature_size = 0;
  int num_classes = 0;
  std::vector<float> features;
  std::vector<float> logits;

  // The base model's class of row i.
  int label(int64_t i) const;
  // Appends row i of `other` (same sizes).
  void Append(const TrainingRows& other, int64_t i);
  // Rows `indices` of this, as new rows.
  TrainingRows Select(const std::vector<int64_t>& indices) const;
};

}  // namespace gati::runtime

#endif  // GATI_RUNTIME_TRAINING_ROWS_H_
