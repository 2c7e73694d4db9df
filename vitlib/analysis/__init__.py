"""Analyses of trained models (paper §4.1 few-shot probes, §4.5 / App. D.7-D.8 inspection)."""
from vitlib.analysis.attention import (
                                       attention_distances,
                                       attention_rollout,
                                       collect_attentions,
                                       head_maps,
                                       mean_attention_distance,
                                       patch_distance_matrix,
                                       rollout_maps,
                                       rollout_to_maps,
                                       uniform_attention_distance,
)
from vitlib.analysis.embeddings import (
                                       embedding_filter_pca,
                                       embedding_filters,
                                       neighbour_minus_far_similarity,
                                       pos_embed_cosine_similarity,
                                       pos_embed_similarity,
)
from vitlib.analysis.fewshot import extract_features, few_shot_accuracy, few_shot_eval, fit_least_squares, sample_k_shot
from vitlib.analysis.plots import (
                                       plot_attention_distance,
                                       plot_embedding_filters,
                                       plot_head_maps,
                                       plot_inductive_bias,
                                       plot_pos_embed_similarity,
                                       plot_rollout,
)
from vitlib.analysis.receptive_field import (
                                       effective_receptive_field,
                                       effective_receptive_field_maps,
                                       mass_radius,
                                       sequential_stages,
)

__all__ = [
    "attention_distances", "attention_rollout", "collect_attentions", "head_maps", "mean_attention_distance",
    "patch_distance_matrix", "rollout_maps", "rollout_to_maps", "uniform_attention_distance",
    "embedding_filter_pca", "embedding_filters", "neighbour_minus_far_similarity", "pos_embed_cosine_similarity",
    "pos_embed_similarity",
    "extract_features", "few_shot_accuracy", "few_shot_eval", "fit_least_squares", "sample_k_shot",
    "plot_attention_distance", "plot_embedding_filters", "plot_head_maps", "plot_inductive_bias",
    "plot_pos_embed_similarity", "plot_rollout",
    "effective_receptive_field", "effective_receptive_field_maps", "mass_radius",
    "sequential_stages",
]
