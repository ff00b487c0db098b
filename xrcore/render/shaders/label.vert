// Text labels: one instanced draw of quads (leader lines, then a rounded plate per label and its
// glyphs), each a billboard in world space turned towards the head, sized in metres or as a constant
// visual angle. The decluttering layout (labels.py) shifts a plate up or down along the billboard by
// an offset in line units, the same for both eyes, or hides the label; a leader line then joins the
// plate to its anchor.
layout(location = 0) in vec4 i_rect;  // x0, y0, x1, y1: quad in line units around the label's pivot
layout(location = 1) in vec4 i_uv;    // u0, v0, u1, v1: atlas coordinates of the quad's corners
layout(location = 2) in vec4 i_meta;  // x: label index, y: 0 a glyph, 1 the plate, 2 the leader line
                                      // (for which i_rect is its width and the plate's height)

uniform samplerBuffer u_labels;  // per label: (pivot xyz in world metres, -), text colour (linear
                                 // RGBA), (plate offset in line units, 1 shown / 0 hidden, scale, -)
uniform vec3 u_head_pos;         // between the eyes, world metres: every eye sees the same billboard
uniform vec3 u_head_up;
uniform vec3 u_head_right;
uniform int u_angular;           // 1: u_size is line height per metre of distance; 0: metres
uniform float u_size;            // of a label of scale 1
uniform float u_near;            // metres: a pivot nearer than this (or behind the eye) draws nothing

out vec2 v_uv;
out vec2 v_local;
flat out vec4 v_color;
flat out vec4 v_rect;
flat out int v_plate;

void main() {
  int eye = EYE;
  int label = int(i_meta.x);
  vec3 pivot = texelFetch(u_labels, 3 * label).xyz;
  vec4 place = texelFetch(u_labels, 3 * label + 2);
  // triangle strip corners: (0, 0), (1, 0), (0, 1), (1, 1)
  vec2 corner = vec2(float(gl_VertexID & 1), float(gl_VertexID >> 1));
  vec4 rect = i_rect;
  int kind = int(i_meta.y);
  if (kind == 2) {
    // leader: from the anchor to the plate's near edge (nothing when the plate sits on its anchor)
    float offset = place.x;
    rect.yw = offset > 0.0 ? vec2(0.0, offset) : vec2(min(offset + i_rect.w, 0.0), 0.0);
  } else {
    rect.yw += place.x;
  }
  vec2 local = mix(rect.xy, rect.zw, corner);
  vec3 to = pivot - u_head_pos;
  float dist = length(to);
  // face the head, upright with it; straight above or below the head, keep the head's right
  vec3 fwd = dist > 1e-6 ? to / dist : cross(u_head_up, u_head_right);
  vec3 right = cross(fwd, u_head_up);
  right = length(right) > 1e-3 ? normalize(right) : u_head_right;
  vec3 up = cross(right, fwd);
  // a line unit in metres: the label's own scale times the style's size
  float h = (u_angular == 1 ? u_size * dist : u_size) * place.z;
  vec3 world = pivot + (right * local.x + up * local.y) * h;
  v_uv = mix(i_uv.xy, i_uv.zw, corner);
  v_local = local;
  v_color = texelFetch(u_labels, 3 * label + 1);
  v_rect = rect;
  v_plate = kind;
  vec4 pivot_clip = u_view_proj[eye] * vec4(pivot, 1.0);
  // clip w is the distance in front of this eye: a label behind it must not wrap into view
  // hidden by the layout: outside the clip volume as well
  bool drawn = pivot_clip.w > u_near && place.y > 0.5;
  gl_Position = drawn ? u_view_proj[eye] * vec4(world, 1.0) : vec4(2.0, 2.0, 2.0, 1.0);
  set_layer(eye);
}
