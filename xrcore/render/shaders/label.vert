// Text labels: one instanced draw of quads (a rounded plate per label, then its glyphs), each a
// billboard in world space turned towards the head, sized in metres or as a constant visual angle.
layout(location = 0) in vec4 i_rect;  // x0, y0, x1, y1: quad in line units around the label's pivot
layout(location = 1) in vec4 i_uv;    // u0, v0, u1, v1: atlas coordinates of the quad's corners
layout(location = 2) in vec4 i_meta;  // x: label index, y: 1 for the plate, 0 for a glyph

uniform samplerBuffer u_labels;  // per label: (pivot xyz in world metres, -), text colour (linear RGBA)
uniform vec3 u_head_pos;         // between the eyes, world metres: every eye sees the same billboard
uniform vec3 u_head_up;
uniform vec3 u_head_right;
uniform int u_angular;           // 1: u_size is line height per metre of distance; 0: metres
uniform float u_size;
uniform float u_near;            // metres: a pivot nearer than this (or behind the eye) draws nothing

out vec2 v_uv;
out vec2 v_local;
flat out vec4 v_color;
flat out vec4 v_rect;
flat out int v_plate;

void main() {
  int eye = EYE;
  int label = int(i_meta.x);
  vec3 pivot = texelFetch(u_labels, 2 * label).xyz;
  // triangle strip corners: (0, 0), (1, 0), (0, 1), (1, 1)
  vec2 corner = vec2(float(gl_VertexID & 1), float(gl_VertexID >> 1));
  vec2 local = mix(i_rect.xy, i_rect.zw, corner);
  vec3 to = pivot - u_head_pos;
  float dist = length(to);
  // face the head, upright with it; straight above or below the head, keep the head's right
  vec3 fwd = dist > 1e-6 ? to / dist : cross(u_head_up, u_head_right);
  vec3 right = cross(fwd, u_head_up);
  right = length(right) > 1e-3 ? normalize(right) : u_head_right;
  vec3 up = cross(right, fwd);
  float h = u_angular == 1 ? u_size * dist : u_size;
  vec3 world = pivot + (right * local.x + up * local.y) * h;
  v_uv = mix(i_uv.xy, i_uv.zw, corner);
  v_local = local;
  v_color = texelFetch(u_labels, 2 * label + 1);
  v_rect = i_rect;
  v_plate = int(i_meta.y);
  vec4 pivot_clip = u_view_proj[eye] * vec4(pivot, 1.0);
  // clip w is the distance in front of this eye: a label behind it must not wrap into view
  gl_Position = pivot_clip.w > u_near ? u_view_proj[eye] * vec4(world, 1.0) : vec4(2.0, 2.0, 2.0, 1.0);
  set_layer(eye);
}
