// Label glyphs: atlas coverage as alpha in the label's colour; plates: a rounded rectangle with an
// anti-aliased edge; leader lines: the label's colour, a little transparent.
in vec2 v_uv;
in vec2 v_local;
flat in vec4 v_color;
flat in vec4 v_rect;
flat in int v_plate;

uniform sampler2D u_atlas;
uniform vec4 u_plate_color;  // linear RGBA

out vec4 o_color;

void main() {
  if (v_plate == 1) {
    vec2 half_size = 0.5 * (v_rect.zw - v_rect.xy);
    float r = min(0.3, min(half_size.x, half_size.y));
    vec2 q = abs(v_local - 0.5 * (v_rect.xy + v_rect.zw)) - (half_size - r);
    float d = length(max(q, 0.0)) + min(max(q.x, q.y), 0.0) - r;  // signed distance, line units
    float a = clamp(0.5 - d / max(fwidth(d), 1e-6), 0.0, 1.0);
    o_color = vec4(u_plate_color.rgb, u_plate_color.a * a);
  } else if (v_plate == 2) {
    o_color = vec4(v_color.rgb, 0.7 * v_color.a);
  } else {
    o_color = vec4(v_color.rgb, v_color.a * texture(u_atlas, v_uv).r);
  }
  if (o_color.a <= 0.0) discard;
}
