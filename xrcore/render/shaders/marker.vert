// Instanced markers in world space: spheres (landmarks, heads, hands) and segments (strokes,
// pointer rays) drawn from a unit sphere and a unit cylinder along +Z.
layout(location = 0) in vec3 a_position;
layout(location = 1) in vec3 a_normal;
layout(location = 3) in vec4 i_p0;     // xyz: centre / segment start (m); w: radius (m)
layout(location = 4) in vec4 i_p1;     // xyz: segment end (m); unused for spheres
layout(location = 5) in vec4 i_color;  // linear RGBA

uniform int u_segments;  // 0 spheres, 1 segments

out vec3 v_world;
out vec3 v_normal;
flat out vec4 v_color;
flat out int v_eye;

void main() {
  int eye = EYE;
  vec3 world;
  vec3 normal;
  if (u_segments == 0) {
    world = i_p0.xyz + a_position * i_p0.w;
    normal = a_normal;
  } else {
    vec3 axis = i_p1.xyz - i_p0.xyz;
    float len = max(length(axis), 1e-6);
    vec3 z = axis / len;
    vec3 helper = abs(z.y) < 0.99 ? vec3(0.0, 1.0, 0.0) : vec3(1.0, 0.0, 0.0);
    vec3 x = normalize(cross(helper, z));
    vec3 y = cross(z, x);
    world = i_p0.xyz + (x * a_position.x + y * a_position.y) * i_p0.w + axis * a_position.z;
    normal = x * a_normal.x + y * a_normal.y;
  }
  v_world = world;
  v_normal = normal;
  v_color = i_color;
  v_eye = eye;
  gl_Position = u_view_proj[eye] * vec4(world, 1.0);
  set_layer(eye);
}
