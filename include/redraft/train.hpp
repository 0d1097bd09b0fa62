// redraft/train.hpp: umbrella header for distillation of the draft head (train/), on top of
// redraft/redraft.hpp. Separate because it is heavy to compile and only trainers need it.
#pragma once

#include "redraft/redraft.hpp"
#include "redraft/train/adamw.hpp"
#include "redraft/train/distill_batch.hpp"
#include "redraft/train/distill_data.hpp"
#include "redraft/train/distill_loss.hpp"
#include "redraft/train/distill_trainer.hpp"
#include "redraft/train/head_gradient.hpp"
#include "redraft/train/head_parameters.hpp"
