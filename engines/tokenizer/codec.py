"""``compress`` / ``decompress`` of a VQ keyframe tokenizer, as CompressAI's ``model.compress()`` / ``decompress()``:
an image becomes the bitstream's :class:`KeyframeTokens` (its indices K* entropy-coded under the rate point's static
model) and back. The filters see only these two; ``TokenGrid`` stays inside the engines."""
from __future__ import annotations

from m3cvcav.bitstream.entropy import decode_tokens, encode_tokens
from m3cvcav.bitstream.units import KeyframeTokens

from ..interfaces import Image, TokenGrid


class TokenCodec:
    """Mixin for a tokenizer with ``encode(image, rate_point) -> TokenGrid``, ``decode(grid) -> image``,
    ``token_model(rate_point)`` and ``vocab``."""

    def compress(self, image: Image, rate_point: int) -> KeyframeTokens:
        """The keyframe's tokens at ``rate_point``, entropy-coded: what the KEYFRAME_TOKENS unit carries."""
        grid = self.encode(image, rate_point)
        payload = encode_tokens(grid.indices, self.token_model(grid.rate_point))
        return KeyframeTokens(grid.codebook_id, grid.rate_point, tuple(int(n) for n in grid.indices.shape),
                              tuple(int(n) for n in grid.image_size), payload)

    def decompress(self, tokens: KeyframeTokens) -> Image:
        """The image the tokens decode to, at their ``image_size`` (what every decoder reconstructs)."""
        indices = decode_tokens(tokens.payload, tokens.shape, self.token_model(tokens.rate_point))
        return self.decode(TokenGrid(indices, tokens.codebook_id, tokens.rate_point, self.vocab,
                                     tuple(tokens.image_size)))
