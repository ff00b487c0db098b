in vec3 v_world;
in vec3 v_normal;
flat in vec4 v_color;
flat in int v_eye;

uniform vec3 u_eye_pos[2];

out vec4 o_color;

void main() {
  vec3 v = normalize(u_eye_pos[v_eye] - v_world);
  vec3 n = normalize(v_normal);
  if (dot(n, v) < 0.0) n = -n;
  float diffuse = max(dot(n, v), 0.0);
  // opaque, drawn unblended: full coverage, so that the image stays premultiplied over a clear background
  o_color = vec4(v_color.rgb * (0.35 + 0.65 * diffuse), 1.0);
}
