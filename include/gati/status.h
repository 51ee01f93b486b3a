// Status conventions shared by every gati module.
//
// Errors cross module boundaries as absl::Status / absl::StatusOr<T>; no
// exception escapes a gati function. The macros below propagate errors:
//
//   GATI_RETURN_IF_ERROR(WriteFile(path));
//   GATI_ASSIGN_OR_RETURN(auto model, StagedModel::Load(path));
#ifndef GATI_STATUS_H_
#define GATI_STATUS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define GATI_STATUS_CONCAT_INNER_(a, b) a##b
#define GATI_STATUS_CONCAT_(a, b) GATI_STATUS_CONCAT_INNER_(a, b)

// Returns the status of `expr` from the current function when it is not OK.
#define GATI_RETURN_IF_ERROR(expr)                  \
  do {                                              \
    ::absl::Status gati_status_ = (expr);           \
    if (!gati_status_.ok()) return gati_status_;    \
  } while (0)

// Evaluates `expr` (a StatusOr); returns its status when not OK, otherwise
// moves its value into `lhs` (which may be a declaration).
#define GATI_ASSIGN_OR_RETURN(lhs, expr)                                   \
  GATI_ASSIGN_OR_RETURN_IMPL_(                                             \
      GATI_STATUS_CONCAT_(gati_statusor_, __LINE__), lhs, expr)
#define GATI_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                \
  if (!statusor.ok()) return statusor.status();          \
  lhs = std::move(statusor).value()

#endif  // GATI_STATUS_H_
