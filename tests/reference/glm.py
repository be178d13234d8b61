"""The original GLM (Du et al. 2022): learned 2-D positions and the pre-LN GPT-2 style stack.

Transcribed from THUDM/GLM: mpu/transformer.py (`ParallelSelfAttention`, `gelu_impl`,
`ParallelMLP`, `ParallelTransformerLayer`, `GPT2ParallelTransformer`) and model/modeling_glm.py
(`GLMModel.forward`). Bodies keep their published names and layout ([b, s, h]).
Deviations, each marked `# plmlab:` where it is made:
- one model-parallel partition: `ColumnParallelLinear` / `RowParallelLinear` are `torch.nn.Linear`
  (with world size 1 they compute exactly that), apex's `FusedLayerNorm` is `torch.nn.LayerNorm`,
  `VocabParallelEmbedding` is `torch.nn.Embedding`, and the gather / copy region calls are identity;
- no dropout modules (eval numerics), no memory (Transformer-XL `mems`), no relative encoding,
  no activation checkpointing, no prompt spell, no init methods (weights are copied in).
"""

import math

import torch
import torch.nn.functional as F
from torch.nn import LayerNorm  # plmlab: published apex FusedLayerNorm


# mpu/utils.py: split_tensor_along_last_dim (Megatron-LM's; ChatGLM-6B's SelfAttention has the same body)
def split_tensor_along_last_dim(tensor, num_partitions, contiguous_split_chunks=False):
    last_dim = tensor.dim() - 1
    last_dim_size = tensor.size()[last_dim] // num_partitions
    tensor_list = torch.split(tensor, last_dim_size, dim=last_dim)
    if contiguous_split_chunks:
        return tuple(chunk.contiguous() for chunk in tensor_list)
    return tensor_list


# mpu/transformer.py: ParallelSelfAttention (the `mem is None`, non-relative path)
class ParallelSelfAttention(torch.nn.Module):
    def __init__(self, hidden_size, num_attention_heads):
        super(ParallelSelfAttention, self).__init__()
        self.hidden_size_per_partition = hidden_size
        self.hidden_size_per_attention_head = hidden_size // num_attention_heads
        self.num_attention_heads_per_partition = num_attention_heads
        # Strided linear layer.
        self.query_key_value = torch.nn.Linear(hidden_size, 3 * hidden_size)  # plmlab: ColumnParallelLinear
        # Output.
        self.dense = torch.nn.Linear(hidden_size, hidden_size)  # plmlab: RowParallelLinear

    def _transpose_for_scores(self, tensor):
        """Transpose a 3D tensor [b, s, np*hn] into a 4D tensor with
        size [b, np, s, hn].
        """
        new_tensor_shape = tensor.size()[:-1] + \
                           (self.num_attention_heads_per_partition,
                            self.hidden_size_per_attention_head)
        tensor = tensor.view(*new_tensor_shape)
        return tensor.permute(0, 2, 1, 3)

    def forward(self, hidden_states, ltor_mask):
        # hidden_states: [b, s, h]
        # ltor_mask: [1, 1, s, s]

        # Attention heads. [b, s, hp]
        mixed_x_layer = self.query_key_value(hidden_states)
        (mixed_query_layer,
         mixed_key_layer,
         mixed_value_layer) = split_tensor_along_last_dim(mixed_x_layer, 3)

        # Reshape and transpose [b, np, s, hn]
        query_layer = self._transpose_for_scores(mixed_query_layer)
        key_layer = self._transpose_for_scores(mixed_key_layer)
        value_layer = self._transpose_for_scores(mixed_value_layer)
        # Raw attention scores. [b, np, s, s]
        attention_scores = torch.matmul(query_layer, key_layer.transpose(-1, -2))
        attention_scores = attention_scores / math.sqrt(
            self.hidden_size_per_attention_head)
        # Apply the left to right attention mask.
        attention_scores = torch.mul(attention_scores, ltor_mask) - \
                           10000.0 * (1.0 - ltor_mask)

        # Attention probabilities. [b, np, s, s]
        attention_probs = torch.nn.Softmax(dim=-1)(attention_scores)

        # Context layer.
        # [b, np, s, hn]
        context_layer = torch.matmul(attention_probs, value_layer)
        # [b, s, np, hn]
        context_layer = context_layer.permute(0, 2, 1, 3).contiguous()
        new_context_layer_shape = context_layer.size()[:-2] + \
                                  (self.hidden_size_per_partition,)
        # [b, s, hp]
        context_layer = context_layer.view(*new_context_layer_shape)

        # Output. [b, s, h]
        output = self.dense(context_layer)
        return output


# mpu/transformer.py: gelu_impl / gelu
def gelu_impl(x):
    """OpenAI's gelu implementation."""
    return 0.5 * x * (1.0 + torch.tanh(0.7978845608028654 * x *
                                       (1.0 + 0.044715 * x * x)))


def gelu(x):
    return gelu_impl(x)


# mpu/transformer.py: ParallelMLP
class ParallelMLP(torch.nn.Module):
    def __init__(self, hidden_size):
        super(ParallelMLP, self).__init__()
        # Project to 4h.
        self.dense_h_to_4h = torch.nn.Linear(hidden_size, 4 * hidden_size)  # plmlab: ColumnParallelLinear
        # Project back to h.
        self.dense_4h_to_h = torch.nn.Linear(4 * hidden_size, hidden_size)  # plmlab: RowParallelLinear

    def forward(self, hidden_states):
        # [b, s, 4hp]
        intermediate_parallel = self.dense_h_to_4h(hidden_states)
        intermediate_parallel = gelu(intermediate_parallel)

        # [b, s, h]
        output = self.dense_4h_to_h(intermediate_parallel)
        return output


# mpu/transformer.py: ParallelTransformerLayer
class ParallelTransformerLayer(torch.nn.Module):
    def __init__(self, hidden_size, num_attention_heads, layernorm_epsilon):
        super(ParallelTransformerLayer, self).__init__()
        # Layernorm on the input data.
        self.input_layernorm = LayerNorm(hidden_size, eps=layernorm_epsilon)

        # Self attention.
        self.attention = ParallelSelfAttention(hidden_size, num_attention_heads)

        # Layernorm on the input data.
        self.post_attention_layernorm = LayerNorm(hidden_size,
                                                  eps=layernorm_epsilon)

        # MLP
        self.mlp = ParallelMLP(hidden_size)

    def forward(self, hidden_states, ltor_mask):
        # hidden_states: [b, s, h]
        # ltor_mask: [1, 1, s, s]

        # Layer norm at the begining of the transformer layer.
        layernorm_output = self.input_layernorm(hidden_states)
        # Self attention.
        attention_output = self.attention(layernorm_output, ltor_mask)
        # Residual connection.
        layernorm_input = hidden_states + attention_output
        # Layer norm post the self attention.
        layernorm_output = self.post_attention_layernorm(layernorm_input)
        # MLP.
        mlp_output = self.mlp(layernorm_output)
        # Second residual connection.
        output = layernorm_input + mlp_output

        return output


# mpu/transformer.py: GPT2ParallelTransformer with block_position_encoding=True
class GPT2ParallelTransformer(torch.nn.Module):
    def __init__(self, num_layers, hidden_size, num_attention_heads, max_sequence_length,
                 layernorm_epsilon=1.0e-5):
        super(GPT2ParallelTransformer, self).__init__()
        self.block_position_encoding = True
        # Position embedding (serial).
        self.position_embeddings = torch.nn.Embedding(max_sequence_length + 1, hidden_size)
        self.block_position_embeddings = torch.nn.Embedding(max_sequence_length + 1, hidden_size)
        # Transformer layers.
        self.layers = torch.nn.ModuleList(
            [ParallelTransformerLayer(hidden_size, num_attention_heads, layernorm_epsilon)
             for _ in range(num_layers)])
        # Final layer norm before output.
        self.final_layernorm = LayerNorm(hidden_size, eps=layernorm_epsilon)

    def forward(self, hidden_states, position_ids, attention_mask):
        batch_size, query_length = hidden_states.size()[:2]
        # attention mask is the beginning postion of B region, \in [0, query_len)
        is_scalar = torch.numel(attention_mask) == 1
        is_sep = is_scalar or torch.numel(attention_mask) == batch_size
        if is_sep:
            sep = attention_mask.item() if is_scalar else attention_mask

            # conventional transformer
            def build_mask_matrix(seq_length, sep, memory_length=0):
                m = hidden_states.new_ones((1, seq_length, seq_length))
                m = torch.tril(m)
                if is_scalar:
                    m[0, :, :sep] = 1
                else:
                    m = m.expand(batch_size, -1, -1)
                    ids = torch.arange(seq_length, device=sep.device, dtype=sep.dtype).view(1, -1)
                    mask = ids < sep.view(-1, 1)
                    m = m.masked_fill(mask.unsqueeze(1).expand_as(m), 1)
                m = m.unsqueeze(1)
                return m

            attention_mask = build_mask_matrix(query_length, sep)
        else:
            attention_mask = attention_mask[:, :, :, -query_length:]

        if self.block_position_encoding:
            position_ids, block_position_ids = position_ids[:, 0], position_ids[:, 1]
        position_embeddings = self.position_embeddings(position_ids)
        hidden_states = hidden_states + position_embeddings
        if self.block_position_encoding:
            block_position_embeddings = self.block_position_embeddings(block_position_ids)
            hidden_states = hidden_states + block_position_embeddings

        for i, layer in enumerate(self.layers):
            hidden_states = layer(hidden_states, attention_mask)

        # Final layer norm.
        output = self.final_layernorm(hidden_states)
        return output


# model/modeling_glm.py: GLMModel
class GLMModel(torch.nn.Module):
    def __init__(self, num_layers, vocab_size, hidden_size, num_attention_heads, max_sequence_length):
        super(GLMModel, self).__init__()
        # Word embeddings (parallel).
        self.word_embeddings = torch.nn.Embedding(vocab_size, hidden_size)  # plmlab: VocabParallelEmbedding
        # Transformer
        self.transformer = GPT2ParallelTransformer(num_layers, hidden_size, num_attention_heads,
                                                   max_sequence_length)

    def forward(self, input_ids, position_ids, attention_mask):
        # Embeddings.
        words_embeddings = self.word_embeddings(input_ids)
        embeddings = words_embeddings
        # Transformer.
        logits = self.transformer(embeddings, position_ids, attention_mask)
        # Parallel logits.
        logits_parallel = F.linear(logits, self.word_embeddings.weight)
        return logits_parallel, logits  # plmlab: published (logits_parallel, *mems)
